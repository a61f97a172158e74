"""WHEP seats of this process: one cap for all viewers, one per address and session.

A seat is taken before the first await of an offer and given back exactly once (a failed
negotiation, a viewer leaving, a peer that never connected, the stream closing). Taking is a
plain synchronous check-and-count on the event loop thread, so any number of offers arriving
together can never hold more seats than the caps allow.
"""

from __future__ import annotations

from commerce.errors import RateLimited
from media.errors import WebrtcFull


class Seat:
    """One taken seat; `release()` is idempotent."""

    __slots__ = ("_ledger", "address", "released", "session_id")

    def __init__(self, ledger: SeatLedger, session_id: int, address: str | None) -> None:
        self._ledger = ledger
        self.session_id = session_id
        self.address = address  # None: an exempt address, not counted per address
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._ledger._give_back(self)


class SeatLedger:
    def __init__(self, cap: int, per_address: int, retry_after_s: int) -> None:
        self.cap = cap
        self.per_address = per_address
        self.retry_after_s = retry_after_s
        self.taken = 0
        self._by_address: dict[tuple[int, str], int] = {}

    def take(self, session_id: int, address: str | None) -> Seat:
        """A seat for a viewer of `session_id` at `address` (None when exempt), or raise:
        `WebrtcFull` (503, watch HLS) or `RateLimited` reason `too_many_seats` (429)."""
        hls = f"/hls/{session_id}/index.m3u8"
        if self.taken >= self.cap:
            raise WebrtcFull(hls=hls)
        if address is not None:
            held = self._by_address.get((session_id, address), 0)
            if held >= self.per_address:
                raise RateLimited(
                    "此地址的低延迟观看已达上限 / Too many low-latency viewers from this address",
                    reason="too_many_seats", limit=self.per_address,
                    retry_after=self.retry_after_s, hls=hls,
                )
            self._by_address[(session_id, address)] = held + 1
        self.taken += 1
        return Seat(self, session_id, address)

    def held_by(self, session_id: int, address: str) -> int:
        return self._by_address.get((session_id, address), 0)

    def _give_back(self, seat: Seat) -> None:
        self.taken -= 1
        if seat.address is not None:
            key = (seat.session_id, seat.address)
            left = self._by_address.get(key, 0) - 1
            if left > 0:
                self._by_address[key] = left
            else:
                self._by_address.pop(key, None)
