"""Which subsystems the app wires in. Each is `setup(app, api)`: adds routes and cleanup contexts."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from server import (
    cluster_component,
    commerce_component,
    media_component,
    notices_component,
    realtime_component,
    referrals_component,
    replay_component,
    signup_component,
    trust_component,
)
from server.api import Api

# Each gets the app before start-up and adds its routes and contexts.
Component = Callable[[web.Application, Api], None]


def components() -> list[Component]:
    # The cluster first: the hub, the recorder and the Socket.IO ids need it at their start.
    return [cluster_component.setup, commerce_component.setup, trust_component.setup,
            realtime_component.setup, media_component.setup, replay_component.setup,
            notices_component.setup, signup_component.setup,
            referrals_component.setup]
