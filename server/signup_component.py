"""Wires getting in: invite links, sign-up, and WeChat sign-in (when configured)."""

from __future__ import annotations

from aiohttp import web

from server import wechat_oauth
from server.api import Api
from server.routes import invites as invites_routes
from server.routes import wechat_login


def setup(app: web.Application, api: Api) -> None:
    for table in (invites_routes.api, wechat_login.api):
        api.operations.extend(table.operations)
    app.cleanup_ctx.append(wechat_oauth.wechat_ctx)
