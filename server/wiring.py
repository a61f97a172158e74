"""Which subsystems the app wires in. Each is `setup(app, api)`: adds routes and cleanup contexts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.app import Component


def components() -> list[Component]:
    from server import (
        commerce_component,
        media_component,
        realtime_component,
        replay_component,
        trust_component,
    )

    return [commerce_component.setup, trust_component.setup, realtime_component.setup,
            media_component.setup, replay_component.setup]
