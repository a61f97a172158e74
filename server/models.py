"""Imports every module that declares SQL tables, so metadata (and Alembic) sees them all."""

from commerce import (  # noqa: F401
    accounts,
    audience,
    catalog,
    commission_payouts,
    commissions,
    community_notices,
    group_buys,
    identities,
    interest_tags,
    invites,
    live_sessions,
    money_ledger,
    notifications,
    orders,
    pickup,
    referrals,
    refunds,
)
from commerce.flash_sale import sales  # noqa: F401
from media import replay_model  # noqa: F401
from realtime import questions  # noqa: F401
from trust import (  # noqa: F401
    claims,
    evidence,
    nps,
    perks,
    points,
    programmes,
    qc,
    reviews,
    samples,
    trace,
    ugc,
    uploads,
)
