"""Which subsystems the app wires in. Each is `setup(app, api)`: adds routes and cleanup contexts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.app import Component


def components() -> list[Component]:
    from server import (
        cluster_component,
        commerce_component,
        media_component,
        realtime_component,
        replay_component,
        signup_component,
        trust_component,
    )

    # The cluster first: the hub, the recorder and the Socket.IO ids need it at their start.
    return [cluster_component.setup, commerce_component.setup, trust_component.setup,
            realtime_component.setup, media_component.setup, replay_component.setup,
            signup_component.setup]
