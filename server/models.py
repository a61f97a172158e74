"""Imports every module that declares SQL tables, so metadata (and Alembic) sees them all."""

from commerce import accounts, catalog, group_buys, live_sessions, orders, pickup, sales  # noqa: F401
from commerce import audience, claims, nps, qc, reviews, trace, trust_orders, uploads  # noqa: F401
from realtime import questions  # noqa: F401
from media import replay_model  # noqa: F401,E402
