"""What both namespaces do before any handler runs: known events only, a dict payload, a budget.

python-socketio dispatches any event name a client sends to `on_<name>` if it exists (silently
ignoring the rest), and would even route a client-sent "connect" to the connect handler. Here a
namespace lists the events clients may send; everything else is answered with a clear error, and
a client flooding events gets `rate_limited` (and is disconnected if it keeps going) while the
others carry on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import socketio

from commerce.errors import DomainError, InvalidInput, RateLimited
from realtime.hub import Hub

log = logging.getLogger(__name__)

# Per socket: a burst of 20 events, refilled at 10 per second.
BUDGET_BURST = 20.0
BUDGET_RATE = 10.0
# Refused for flooding this many times in a row: the socket is closed.
FLOOD_DISCONNECT_AFTER = 200


class UnknownEvent(DomainError):
    code = "unknown_event"
    status = 400
    default_message = "未知事件 / Unknown event"


@dataclass
class Budget:
    tokens: float = BUDGET_BURST
    at: float = 0.0
    refused: int = 0
    told_at: float = 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(BUDGET_BURST, self.tokens + (now - self.at) * BUDGET_RATE)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused = 0
            return True
        self.refused += 1
        return False


def error_payload(exc: DomainError) -> dict[str, Any]:
    details = {k: v for k, v in exc.details.items() if k not in ("code", "message")}
    return {"code": exc.code, "message": exc.message, **details}


Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class GuardedNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Dispatches client events to `handlers()`; answers `{"ok": true, ...}` or an error."""

    client_events: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, namespace: str, hub: Hub) -> None:
        super().__init__(namespace)
        self.hub = hub
        self._budgets: dict[str, Budget] = {}

    def handlers(self) -> dict[str, Handler]:
        raise NotImplementedError

    def sids_of(self, user_id: int) -> list[str]:
        """This process's sockets signed in as `user_id` on this namespace."""
        raise NotImplementedError

    def drop_user(self, user_id: int) -> None:
        """Close a user's sockets here (their tokens were revoked); a reconnect is then refused."""
        for sid in self.sids_of(user_id):
            self.hub.rooms.spawn(self.disconnect(sid))

    async def trigger_event(self, event: str, *args: Any) -> Any:
        sid = args[0]
        # The server calls these while the socket is not (or no longer) connected; a connected
        # client sending an event with these names is refused like any unknown one.
        if event in ("connect", "disconnect") and not self.server.manager.is_connected(
                sid, self.namespace):
            if event == "disconnect":
                self._budgets.pop(sid, None)
                return await super().trigger_event(event, *args)
            return await self._connect(*args)
        budget = self._budgets.setdefault(sid, Budget(at=time.monotonic()))
        now = time.monotonic()
        if not budget.take(now):
            self.hub.refused_events += 1
            if budget.refused >= FLOOD_DISCONNECT_AFTER:
                log.warning("closing a flooding socket", extra={"namespace": self.namespace})
                await self.disconnect(sid)
                return None
            error = RateLimited("发送太频繁 / Too many events, slow down", retry_after_ms=100)
            if now - budget.told_at >= 1.0:
                budget.told_at = now
                await self._tell(sid, event, error)
            return {"ok": False, "error": error_payload(error)}
        handler = self.handlers().get(event) if event in self.client_events else None
        try:
            if handler is None:
                raise UnknownEvent(f"未知事件 {event[:40]!r} / Unknown event {event[:40]!r}",
                                   known=sorted(self.client_events))
            payload = args[1] if len(args) > 1 else {}
            if payload is None:
                payload = {}
            if not isinstance(payload, dict) or len(args) > 2:
                raise InvalidInput("参数必须是一个对象 / The payload must be one JSON object")
            result = await handler(sid, payload)
        except DomainError as exc:
            self.hub.refused_events += 1
            await self._tell(sid, event, exc)
            return {"ok": False, "error": error_payload(exc)}
        except Exception:
            log.exception("socket event failed", extra={"event": event})
            return {"ok": False, "error": {"code": "internal",
                                           "message": "服务器内部错误 / Internal server error"}}
        return {"ok": True, **result}

    async def _connect(self, *args: Any) -> Any:
        """The connect handler, and a way out when one of its dependencies fails.

        python-socketio answers a connect handler that raised anything but a refusal with
        nothing at all: the client waits forever, neither connected nor refused (a database
        connection dropped under it, as bench/chaos.py does; tests/test_chaos.py pins it).
        Closing the transport instead makes socket.io-client reconnect by itself and resume.
        """
        try:
            return await super().trigger_event("connect", *args)
        except (socketio.exceptions.ConnectionRefusedError, ConnectionRefusedError):
            raise
        except DomainError as exc:  # a definite answer: a refusal that says why
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": exc.code, "message": exc.message, **exc.details}) from None
        except Exception:
            log.warning("connect failed; closing the transport so the client retries",
                        exc_info=True, extra={"namespace": self.namespace})
            await self.close_transport(args[0])
            return False

    async def close_transport(self, sid: str) -> None:
        """Close the client's Engine.IO transport rather than leave the namespace:
        socket.io-client takes a namespace disconnect from the server as final ("io server
        disconnect", as for a ban), while after a transport close it reconnects by itself and
        resumes from its last seq."""
        eio_sid = self.server.manager.eio_sid_from_sid(sid, self.namespace)
        if eio_sid is None:
            await self.disconnect(sid)
        else:
            await self.server.eio.disconnect(eio_sid)

    async def _tell(self, sid: str, event: str, exc: DomainError) -> None:
        """Refusals are also sent as a `refused` event, for clients that sent without an ack."""
        await self.server.emit("refused", {"event": event[:40], **error_payload(exc)}, to=sid,
                               namespace=self.namespace, ignore_queue=True)

    async def emit_local(self, sid: str, event: str, data: Any) -> None:
        await self.server.emit(event, data, to=sid, namespace=self.namespace, ignore_queue=True)
