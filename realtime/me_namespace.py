"""`/me`: one signed-in person's own channel, for what is theirs alone (notifications).

Connect with `auth = {"token"}`; anonymous sockets are refused. Every socket of a signed-in
user, here and on `/live`, is in the room `user:{id}` of its namespace; `deliver` emits into
those rooms through python-socketio's Redis manager, so a notification made in one process
reaches the user's sockets in every process and on every node. Clients send no events here.
"""

from __future__ import annotations

from typing import Any

from commerce import accounts
from commerce.errors import DomainError, NotFound
from infra.database import Database
from realtime.access import AddressLimits, TokenVerifier
from realtime.guard import GuardedNamespace, Handler
from realtime.hub import Hub
from realtime.live_namespace import LIVE, principal_from, refuse, user_room

ME = "/me"
NOTIFICATION = "notification"


async def deliver(hub: Hub, user_id: int, payload: dict[str, Any]) -> None:
    """`notification` to every socket of `user_id` (any process, `/me` and `/live`), no one else."""
    for namespace in (ME, LIVE):
        await hub.sio.emit(NOTIFICATION, payload, room=user_room(user_id), namespace=namespace)


class MeNamespace(GuardedNamespace):
    client_events = frozenset()

    def __init__(self, hub: Hub, database: Database, tokens: TokenVerifier,
                 limiter: AddressLimits[Any]) -> None:
        super().__init__(ME, hub)
        self.db = database
        self.tokens = tokens
        self.limiter = limiter
        self._users: dict[str, int] = {}
        hub.connected.setdefault(ME, 0)

    def handlers(self) -> dict[str, Handler]:
        return {}

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        auth = auth if isinstance(auth, dict) else {}
        try:
            self.limiter.hit([(self.limiter.connects_ip, self.limiter.environ_ip(environ))])
        except DomainError as exc:
            raise refuse(exc.code, exc.message, **exc.details) from None
        principal = principal_from(self.tokens, auth, required=True)
        assert principal is not None
        try:
            async with self.db.session() as db:
                user = await accounts.get_user(db, principal.user_id)
        except NotFound:
            raise refuse("unauthorized", "账号不存在 / No such account") from None
        if user.disabled:
            raise refuse("unauthorized", "账号已停用 / Account disabled")
        self._users[sid] = principal.user_id
        self.hub.connected[ME] += 1
        await self.enter_room(sid, user_room(principal.user_id))

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        if self._users.pop(sid, None) is not None:
            self.hub.connected[ME] -= 1

    def sids_of(self, user_id: int) -> list[str]:
        return [sid for sid, uid in self._users.items() if uid == user_id]
