"""Imports every module that declares SQL tables, so metadata (and Alembic) sees them all."""

from commerce import (  # noqa: F401
    accounts,
    audience,
    catalog,
    claims,
    group_buys,
    identities,
    invites,
    live_sessions,
    nps,
    orders,
    pickup,
    qc,
    refunds,
    reviews,
    sales,
    trace,
    trust_orders,
    uploads,
)
from media import replay_model  # noqa: F401
from realtime import questions  # noqa: F401
