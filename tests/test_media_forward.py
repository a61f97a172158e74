"""The lean forwarding path: each viewer's packets leave through its own copy of its ICE socket,
protected by libsrtp in one shared buffer (media/rtp_forward.py). Real aiortc peers, loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
import uvloop
from aioice.turn import TurnClientUdpProtocol, TurnTransport

from infra.settings import Settings
from media.keys import media_hub_key
from media.rtp_forward import udp_socket_of
from tests.test_media_webrtc import (
    new_session,
    no_leaked_peers,  # noqa: F401  (autouse: no peer outlives a test)
)
from tests.webrtc_clients import Viewer, publish, view, wait_for

pytestmark = pytest.mark.timeout(120)

SOURCE_FPS = 30
WINDOW_FRAMES = 90  # three seconds of the source
MIN_FPS = 25


@pytest.fixture
def media_settings(settings: Settings) -> Settings:
    return settings.with_(publisher_grace_s=5, webrtc_viewer_cap=3)


async def test_viewers_get_every_frame_through_their_own_sockets(make_api, media_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(media_settings)
    session_id, key, _ = await new_session(api)
    pub = await publish(api.client, session_id, key)
    viewers: list[Viewer] = []
    try:
        assert pub.status == 201 and pub.video is not None
        source = pub.video
        viewers += [await view(api.client, session_id), await view(api.client, session_id)]
        assert await wait_for(lambda: all(v.got.video_frames >= 10 for v in viewers), 30)
        stream = api.app[media_hub_key].streams[session_id]
        # A late joiner gets pictures (it waits for a keyframe, asked for when it joined).
        late = await view(api.client, session_id)
        viewers.append(late)
        assert await wait_for(lambda: late.got.first_video_at is not None, 10)

        legs = [leg for fanout in stream.fanouts.values() for leg in fanout.legs]
        assert len(legs) == 6  # three viewers, video and audio each
        for leg in legs:
            # The fast path, on the nominated pair's own port (the 5-tuple ICE checked).
            assert leg.direct and leg.sock is not None
            assert leg.sock.getsockname()[1] == leg.pair.local_addr[1]

        # Counted, not timed: of WINDOW_FRAMES pictures the source really sent, each viewer
        # decoded at least MIN_FPS worth (a busy box may slow the source, not the share). Every
        # viewer decrypting proves each got its own protection of the plain payload, not
        # another viewer's ciphertext.
        watching = list(viewers)
        before = [v.got.video_frames for v in watching]
        start = source.produced
        assert await wait_for(lambda: source.produced >= start + WINDOW_FRAMES, 30)
        enough = WINDOW_FRAMES * MIN_FPS // SOURCE_FPS

        def got() -> list[int]:
            return [v.got.video_frames - b for v, b in zip(watching, before, strict=True)]

        assert await wait_for(lambda: min(got()) >= enough, 5), got()
        assert all(v.got.sizes == {(320, 180)} for v in viewers)
        assert all(v.got.audio_frames > 0 for v in viewers)
        assert all(f.send_errors == 0 for f in stream.fanouts.values())

        # A viewer leaving gives its sockets back at once; the others go on.
        gone = watching.pop(0)
        assert gone.location is not None
        peer = stream.viewers[gone.location.rsplit("/", 1)[1]]
        sockets = [leg.sock for _, leg in peer.legs]
        resp = await api.client.delete(gone.location)
        assert resp.status == 200
        await gone.close()
        assert all(s is not None and s.fileno() == -1 for s in sockets)
        assert sum(len(f.legs) for f in stream.fanouts.values()) == 4
        before = [v.got.video_frames for v in watching]
        assert await wait_for(lambda: min(got()) >= 15, 10)
    finally:
        for v in viewers:
            await v.close()
        await pub.pc.close()


async def _duplicate_sends_from_the_transports_port() -> None:
    loop = asyncio.get_running_loop()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)  # uvloop has no sock_recvfrom; the datagram is there at once anyway
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    try:
        sock = udp_socket_of(transport)
        assert sock is not None
        own = transport.get_extra_info("socket")
        assert sock.fileno() != own.fileno()
        sock.sendto(memoryview(b"rtp!"), receiver.getsockname())
        data, source = receiver.recvfrom(64)
        assert data == b"rtp!" and source == transport.get_extra_info("sockname")
        # Closing ours leaves the transport's socket working (and the other way round).
        sock.close()
        transport.sendto(b"still", receiver.getsockname())
        assert receiver.recvfrom(64)[0] == b"still"
    finally:
        transport.close()
        receiver.close()


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop],
                         ids=["asyncio", "uvloop"])
def test_a_duplicate_of_the_ice_socket_sends_from_its_port(loop_factory: LoopFactory) -> None:
    # The app serves on uvloop, tests on asyncio: the socket must be found under both.
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_duplicate_sends_from_the_transports_port())


def test_a_turn_relayed_viewer_keeps_aioices_transport() -> None:
    protocol = TurnClientUdpProtocol(("127.0.0.1", 3478), username="u", password="p",
                                  lifetime=600, channel_refresh_time=500)
    assert udp_socket_of(TurnTransport(protocol)) is None
