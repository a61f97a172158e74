"""Wires getting in: invite links, sign-up, and WeChat sign-in (when configured)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from commerce import invites
from commerce.accounts import Principal, Role
from server import wechat_oauth
from server.api import Api
from server.demo import DemoInfo, demo_seeders_key
from server.keys import database_key, settings_key
from server.routes import invites as invites_routes
from server.routes import wechat_login


def setup(app: web.Application, api: Api) -> None:
    for table in (invites_routes.api, wechat_login.api):
        api.operations.extend(table.operations)
    app.cleanup_ctx.append(wechat_oauth.wechat_ctx)
    app[demo_seeders_key].append(seed_demo_invite)


async def seed_demo_invite(app: web.Application, info: DemoInfo) -> None:
    """A link to the demo's first community, printed at start, to try the join page with."""
    community_id = next(iter(info.communities.values()), None)
    host_id = info.users.get("laozhang")
    if community_id is None or host_id is None:
        return
    async with app[database_key].session() as db:
        found = (await db.execute(
            select(invites.Invite).where(invites.Invite.community_id == community_id,
                                         invites.Invite.created_by == host_id)
            .order_by(invites.Invite.id.desc()))).scalars().first()
        if found is None or found.state() != "valid":
            found = await invites.create_invite(
                db, community_id, Principal(host_id, "laozhang", Role.HOST))
        code = found.code
    info.lines.append(f"  邀请链接 Invite link:   {app[settings_key].base_url}/join/{code}")
