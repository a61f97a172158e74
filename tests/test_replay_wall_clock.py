"""Replay chapters open on the moment of their pin, checked against the clock in the picture.

The publisher is the demo's synthetic camera (media/synthetic.py), which paints the wall-clock
time it made each frame into the picture as 32 black/white blocks. It runs as on a busy box
(each frame takes longer to make than the frame rate allows), is recorded in three parts (the
server process restarts after the first, the publisher drops and comes back after the second,
both after an outage) and products are pinned at moments in each part and during an outage.
After the replay is built, the frame at each chapter's start is decoded with ffmpeg and its
painted time read back: it must be the pin's moment (or, for a pin made while nothing was
recorded, the moment the picture resumed), and the replay lasts as long as the media recorded.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from commerce import catalog
from commerce.base import as_utc
from infra.settings import Settings
from media.ffmpeg_bin import ffmpeg_binary
from media.recordings import recordings_key
from media.segment_index import SegmentEntry
from media.synthetic import FarmVideoTrack, read_strip
from server.keys import database_key
from tests.conftest import Api, AppFactory
from tests.media_flow import host_session, wait_replay
from tests.webrtc_clients import Publisher, publish

pytestmark = pytest.mark.timeout(300)

WIDTH, HEIGHT, FPS = 640, 360, 15  # the demo's picture (the time strip needs 512 px)
PART_S = 9.0
OUTAGE_S = 4.0
# The painted time is when the frame was made; the pin is when the host pressed. Between them:
# the encode, the network and a frame's length. A chapter a second off shows the wrong moment.
TOLERANCE_MS = 1000


class BusyCamera(FarmVideoTrack):
    """The synthetic camera on a loaded box: making a frame takes half a frame longer than the
    frame rate allows, so it keeps up with about two thirds of its frames."""

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(0.5 / self.fps)
        return await super().recv()


def _ms_apart(a: int, b: int) -> int:
    """a - b for painted times (milliseconds modulo 2**32)."""
    return (a - b + 2**31) % 2**32 - 2**31


def _ms32(wall: float) -> int:
    return int(wall * 1000) & 0xFFFFFFFF


async def _painted_time_at(playlist: Path, at_s: float) -> int:
    """The time painted in the first frame at or after `at_s` of the replay."""
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_binary(), "-nostdin", "-v", "error", "-ss", f"{at_s:.3f}", "-i", str(playlist),
        "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0 and len(out) == WIDTH * HEIGHT, err.decode(errors="replace")
    return read_strip(np.frombuffer(out, np.uint8).reshape(HEIGHT, WIDTH))


async def _product(api: Api, token: str, name: str) -> int:
    resp = await api.client.post("/api/products", json={"name": name, "price_fen": 1990},
                                 headers=api.auth(token))
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


async def _pin(api: Api, token: str, session_id: int, product_id: int) -> None:
    resp = await api.client.post(f"/api/sessions/{session_id}/pin", json={"product_id": product_id},
                                 headers=api.auth(token))
    assert resp.status == 200, await resp.text()


async def _go_live(api: Api, session_id: int, key: str) -> Publisher:
    """Publish and wait until the new part's first segment is on disk."""
    before = len(api.app[recordings_key].segments(session_id))
    pub = await publish(api.client, session_id, key, video=BusyCamera(WIDTH, HEIGHT, fps=FPS))
    assert pub.status == 201, pub.body
    deadline = time.monotonic() + 30
    while len(api.app[recordings_key].segments(session_id)) < before + 1:
        assert time.monotonic() < deadline, "nothing recorded"
        await asyncio.sleep(0.2)
    return pub


async def test_chapters_open_on_their_pin_across_a_restart_a_reconnect_and_outages(
    make_api: AppFactory, settings: Settings
) -> None:
    settings = settings.with_(rtmp_port=-1, publisher_grace_s=30)
    api = await make_api(settings)
    token, session_id, key = await host_session(api)
    products = [await _product(api, token, name) for name in ("白玉枇杷", "橄榄油", "桑葚", "土鸡蛋")]
    resumed: list[float] = []  # wall clock of the first recorded moment of each part

    # Part 1, then the server process restarts while the publisher is away.
    pub = await _go_live(api, session_id, key)
    await asyncio.sleep(2.0)
    await _pin(api, token, session_id, products[0])
    await asyncio.sleep(PART_S - 2.0)
    await pub.pc.close()
    await api.client.close()
    await asyncio.sleep(OUTAGE_S)

    # Part 2 on the restarted server; then the publisher drops, and during that outage the
    # host pins a product: its chapter can only open where the picture resumed.
    api = await make_api(settings)
    recordings = api.app[recordings_key]
    parts = len(recordings.segments(session_id))
    pub = await _go_live(api, session_id, key)
    resumed.append(recordings.segments(session_id)[parts].wall)
    await asyncio.sleep(2.0)
    await _pin(api, token, session_id, products[1])
    await asyncio.sleep(PART_S - 2.0)
    await pub.pc.close()
    await asyncio.sleep(OUTAGE_S / 2)
    await _pin(api, token, session_id, products[2])
    await asyncio.sleep(OUTAGE_S / 2)

    # Part 3: the publisher is back (its timestamps start again from zero).
    parts = len(recordings.segments(session_id))
    pub = await _go_live(api, session_id, key)
    resumed.append(recordings.segments(session_id)[parts].wall)
    await asyncio.sleep(2.0)
    await _pin(api, token, session_id, products[3])
    await asyncio.sleep(PART_S - 2.0)
    resp = await api.client.post(f"/api/sessions/{session_id}/end", headers=api.auth(token))
    assert resp.status == 200, await resp.text()
    await pub.pc.close()
    replay = await wait_replay(api, session_id, within_s=120)
    assert replay["status"] == "ready", replay

    entries: list[SegmentEntry] = recordings.segments(session_id)
    recorded = sum(e.duration for e in entries)
    span = entries[-1].wall + entries[-1].duration - entries[0].wall
    # Outages are cut: the replay is the media recorded, not the wall-clock span.
    assert abs(replay["duration_s"] - recorded) <= 0.5, (replay["duration_s"], recorded)
    assert replay["duration_s"] <= span - OUTAGE_S, (replay["duration_s"], span)

    async with api.app[database_key].session() as db:
        pinned = {pin.id: as_utc(pin.pinned_at).timestamp()
                  for pin in await catalog.pins_for_session(db, session_id)}
    chapters: list[dict[str, Any]] = replay["chapters"]
    assert [c["product_id"] for c in chapters] == products, chapters
    playlist = recordings.replay_dir(session_id) / "index.m3u8"
    expected = [pinned[c["pin_id"]] for c in chapters]
    expected[2] = resumed[1]  # pinned while nothing was recorded: where the picture resumed
    assert pinned[chapters[2]["pin_id"]] < resumed[1]
    offsets = [_ms_apart(await _painted_time_at(playlist, chapter["start_s"]), _ms32(moment))
               for chapter, moment in zip(chapters, expected, strict=True)]
    print("picture minus moment at each chapter start (ms):", offsets)
    assert all(abs(off) <= TOLERANCE_MS for off in offsets), (offsets, chapters)
