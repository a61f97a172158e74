"""Engine.IO session ids that name the process holding the session.

A long-polling client sends each request of its session as a new HTTP request, which the
kernel (SO_REUSEPORT) or a proxy may hand to any process; only the one that created the session
knows it. Its id therefore starts with that process's id (`<process>.<random>`), and any other
process forwards the request there (server/cluster_routing.py).

python-engineio makes ids in `generate_id()` (public, called once per new session by
`_handle_connect`); tests/test_cluster_units.py fails naming python-engineio if that changes.
"""

from __future__ import annotations

from typing import Any

SEPARATOR = "."


def tag_session_ids(eio_server: Any, process_id: str) -> None:
    original = eio_server.generate_id

    def generate_id() -> str:
        return f"{process_id}{SEPARATOR}{original()}"

    eio_server.generate_id = generate_id


def process_of(sid: str) -> str | None:
    process, sep, _rest = sid.partition(SEPARATOR)
    return process if sep and process else None
