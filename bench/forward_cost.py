"""What one forwarded packet costs per viewer, piece by piece (the breakdown in bench/RESULTS.md).

    python bench/forward_cost.py [--viewers 10] [--packets 3000] [--size 1200]

Sends --packets packets of --size payload bytes to each of --viewers UDP sockets owned by a
reader process (like viewers on the same box: the kernel wakes it), the way media/rtp_forward.py
did before (pylibsrtp `Session.protect` on a fresh header + payload, then the event loop's
datagram transport) and does now (header and payload into one buffer, libsrtp `srtp_protect`
in place, `sendto` on a duplicate of the socket), on uvloop as the server runs. Each piece is
also timed alone. Prints CPU microseconds (this process's user + system time) per packet per
viewer, and the ratio now / before measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

READER = """
import selectors, socket, sys
n = int(sys.argv[1])
sel = selectors.DefaultSelector()
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", 0)); s.setblocking(False); sel.register(s, selectors.EVENT_READ); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
while True:
    for key, _ in sel.select():
        try:
            while True:
                key.fileobj.recv(2048)
        except BlockingIOError:
            pass
"""


def cpu() -> float:
    return time.process_time()  # CLOCK_PROCESS_CPUTIME_ID: os.times() ticks are 10 ms


def per_packet_us(fn: Callable[[], None], packets: int, viewers: int) -> float:
    """CPU us per packet per viewer of `fn` (which sends one packet to every viewer), paced
    like a live source in bursts so the reader keeps up and sleeps between them."""
    spent = 0.0
    done = 0
    while done < packets:
        c0 = cpu()
        for _ in range(20):
            fn()
        spent += cpu() - c0
        done += 20
        time.sleep(0.004)
    return spent / (packets * viewers) * 1e6


async def measure(a: argparse.Namespace, ports: list[int]) -> dict[str, Any]:
    import pylibsrtp

    from media.rtp_forward import RTP_HEADER, Wire, udp_socket_of

    loop = asyncio.get_running_loop()
    key = os.urandom(30)
    legs: list[dict[str, Any]] = []
    try:
        for port in ports:
            transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                               local_addr=("127.0.0.1", 0))
            policy = pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
            policy.allow_repeat_tx = True
            session = pylibsrtp.Session(policy)
            legs.append({"transport": transport, "sock": udp_socket_of(transport), "session": session,
                         "srtp": session._srtp[0], "addr": ("127.0.0.1", port),
                         "ssrc": int.from_bytes(os.urandom(4), "big")})
        payload = os.urandom(a.size)
        wire = Wire()
        seq = [0]
        pack, pack_into = RTP_HEADER.pack, RTP_HEADER.pack_into
        from pylibsrtp._binding import lib

        protect_c = lib.srtp_protect

        def before() -> None:  # the previous per-viewer work (ViewerLeg.send)
            seq[0] = (seq[0] + 1) & 0xFFFF
            for leg in legs:
                leg["transport"].sendto(leg["session"].protect(
                    pack(0x80, 96, seq[0], 1000, leg["ssrc"]) + payload), leg["addr"])

        def now() -> None:  # RtpFanout.forward's per-viewer work
            seq[0] = (seq[0] + 1) & 0xFFFF
            view, cdata, length = wire.view, wire.cdata, wire.length
            end = 12 + len(payload)
            for leg in legs:
                pack_into(view, 0, 0x80, 96, seq[0], 1000, leg["ssrc"])
                view[12:end] = payload
                length[0] = end
                if protect_c(leg["srtp"], cdata, length) == 0:
                    leg["sock"].sendto(view[: length[0]], leg["addr"])

        protected = [legs[0]["session"].protect(pack(0x80, 96, 1, 1000, 1) + payload)]

        def python_only() -> None:  # the loop and buffer work without libsrtp and the kernel
            view, length = wire.view, wire.length
            end = 12 + len(payload)
            for leg in legs:
                pack_into(view, 0, 0x80, 96, 7, 1000, leg["ssrc"])
                view[12:end] = payload
                length[0] = end
                view[: length[0]]

        def srtp_only() -> None:
            seq[0] = (seq[0] + 1) & 0xFFFF
            view, cdata, length = wire.view, wire.cdata, wire.length
            end = 12 + len(payload)
            pack_into(view, 0, 0x80, 96, seq[0], 1000, 1)
            for leg in legs:
                view[12:end] = payload
                length[0] = end
                protect_c(leg["srtp"], cdata, length)

        def pylibsrtp_only() -> None:
            seq[0] = (seq[0] + 1) & 0xFFFF
            data = pack(0x80, 96, seq[0], 1000, 1) + payload
            for leg in legs:
                leg["session"].protect(data)

        def sendto_socket() -> None:
            data = protected[0]
            for leg in legs:
                leg["sock"].sendto(data, leg["addr"])

        def sendto_transport() -> None:
            data = protected[0]
            for leg in legs:
                leg["transport"].sendto(data, leg["addr"])

        pieces = {"before (pylibsrtp + transport)": before, "now (libsrtp in place + socket)": now,
                  "python loop and buffer only": python_only, "libsrtp srtp_protect only": srtp_only,
                  "pylibsrtp Session.protect only": pylibsrtp_only,
                  "sendto, socket (reader woken)": sendto_socket,
                  "sendto, uvloop transport (reader woken)": sendto_transport}
        out: dict[str, Any] = {"viewers": a.viewers, "payload": a.size, "load_before": os.getloadavg()}
        for _ in range(a.rounds):  # alternate: drift on a shared box hits every piece alike
            for name, fn in pieces.items():
                per_packet_us(fn, a.packets // 10, a.viewers)  # warm
                out.setdefault(name, []).append(round(per_packet_us(fn, a.packets, a.viewers), 2))
        for name in pieces:
            out[name] = min(out[name])
        out["ratio now / before"] = round(out["now (libsrtp in place + socket)"]
                                          / out["before (pylibsrtp + transport)"], 3)
        return out
    finally:
        for leg in legs:
            leg["transport"].close()
            if leg["sock"] is not None:
                leg["sock"].close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", type=int, default=10)
    ap.add_argument("--packets", type=int, default=3000)
    ap.add_argument("--size", type=int, default=1200)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    import uvloop

    reader = subprocess.Popen([sys.executable, "-c", READER, str(a.viewers)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None
        ports = [int(p) for p in reader.stdout.readline().split()]
        print(json.dumps(uvloop.run(measure(a, ports))), flush=True)
    finally:
        reader.kill()
        reader.wait()


if __name__ == "__main__":
    main()
