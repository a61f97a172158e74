"""The authorization matrix: every REST route and every Socket.IO client event × every role.

The tables below ARE the access policy; the tests check the running app against them, cell by
cell, against one seeded world (tests/authz_support.py). Completeness is enforced: a route in
the OpenAPI document or the router, or a client event of a namespace, that is missing here
fails `test_matrix_names_every_route` / `test_matrix_names_every_socket_event`.

Reading a row: `allowed` get past authorization (a probe body may then be refused for what it
is: 400/404/409 count as "got past auth"); an anonymous caller gets 401 on a protected route;
everyone else 403. Policy, per group:
- Public reading (sessions, sales, products, batches, trace, reviews, replays, pages) is open:
  a link shared in a neighbourhood group must just work. Pages are static shells; the data
  behind the host and moderation consoles comes from the guarded API below.
- A host acts on what is theirs only: their sessions, sales, products, batches, QC and trace,
  replays, pins. Admins act on anything.
- Moderation (mutes, bans, comment deletion, Q&A review) and fulfilment (ready, picked up,
  delivered, refund) belong to the session's staff: its host, any assistant (platform staff,
  客服), any admin. A host of another session is a stranger there.
- A buyer's things (holds, orders, claims, private photos) are theirs; staff of the order's
  session may read them, other viewers and other hosts may not. Only assistants and admins
  decide claims (the host is a party to the claim).
- Community members are approved by the community's own host (or an admin): a membership
  unlocks community prices and group-buys, so another host must not be able to grant it. The
  same holds for its pickup points (where its orders are collected) and its 团长: a neighbour
  its host appoints, who then works that community's orders, join requests, members and
  notices, and nothing of another community.
- Sanctions (mute, ban) reach only people of lower rank than the one acting: viewers, and
  assistants for the session's host or an admin; never the session's host, never an admin.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

import realtime
from infra.settings import Settings
from realtime.guard import GuardedNamespace
from server.app import create_app
from server.realtime_component import hub_key
from tests.authz_support import (
    ADMIN,
    BUYER,
    BUYER_OR_STAFF,
    DECIDERS,
    HOSTS,
    NO_SUCH,
    OWNER,
    PLATFORM_STAFF,
    PUBLIC,
    ROLES,
    SDP_OFFER,
    STAFF_OF,
    STAFF_ROLES,
    USERS,
    WORKS_A,
    Event,
    Op,
    World,
    deny_first,
    matches,
    seed_world,
    socket_class,
    socket_connect,
)
from tests.conftest import ADMIN_PASSWORD, Api
from trust.dashboard import METRICS

# One worker takes the whole matrix (`--dist loadgroup` in `make test-fast`): its world is built
# once per worker that runs any cell, two seconds of CPU each.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("authz-matrix")]

SOON = (datetime.now(UTC) + timedelta(days=1)).isoformat()
NOT_MEMBER = "409:not_member"
NON_STAFF = ("viewer", "buyer", "member", "other_member", "leader")
NOT_A_KEY = tuple((role, "401") for role in (*NON_STAFF, "assistant", "admin"))
CANNOT_SANCTION = tuple((role, "403:cannot_sanction") for role in STAFF_ROLES)

REST: tuple[Op, ...] = (
    # --- system, auth, accounts --------------------------------------------------------------
    Op("GET", "/healthz", "/healthz", PUBLIC),
    Op("GET", "/metrics", "/metrics", PUBLIC),
    Op("GET", "/api/openapi.json", "/api/openapi.json", PUBLIC),
    Op("GET", "/api/docs", "/api/docs", PUBLIC),
    Op("POST", "/api/auth/token", "/api/auth/token", PUBLIC,
       json=lambda w: {"username": w.usernames["viewer"],
                       "password": "password-" + w.usernames["viewer"]}),
    Op("GET", "/api/me", "/api/me", USERS),
    Op("POST", "/api/users", "/api/users", ADMIN, json={}),
    # An unknown user: the admin's 404 proves the role passed without disabling anyone.
    Op("PATCH", "/api/users/{id}", f"/api/users/{NO_SUCH}", ADMIN, json={"disabled": True}),
    Op("POST", "/api/communities", "/api/communities", HOSTS, json={}),
    Op("GET", "/api/communities", "/api/communities", PUBLIC),
    # Approving a member of host A's community: host A and admins only.
    Op("POST", "/api/communities/{id}/members", "/api/communities/{w.community_a}/members", OWNER,
       json={"user_id": NO_SUCH}),
    Op("POST", "/api/communities/{id}/join", f"/api/communities/{NO_SUCH}/join", USERS),
    # Pickup points are the community's host's (or an admin's): a community's new orders go to
    # its default point, so another host adding or moving one would send neighbours elsewhere.
    Op("POST", "/api/communities/{id}/pickup-points", "/api/communities/{w.community_a}/pickup-points",
       OWNER, json={"name": "矩阵测试点"}),
    Op("PATCH", "/api/pickup-points/{id}", "/api/pickup-points/{w.pickup_a}", OWNER,
       json={"default": True}),
    Op("GET", "/api/communities/{id}/pickup-points", "/api/communities/{w.community_a}/pickup-points",
       PUBLIC),
    # --- getting in: a community's invite links are its host's (or an admin's), like its
    # members; whoever holds a link may see where it leads and sign up with it -----------------
    Op("PATCH", "/api/communities/{id}", "/api/communities/{w.community_a}", OWNER,
       json={"join_policy": "open"}),
    Op("POST", "/api/communities/{id}/invites", "/api/communities/{w.community_a}/invites", OWNER,
       json={"max_uses": 1}),
    Op("GET", "/api/communities/{id}/invites", "/api/communities/{w.community_a}/invites", OWNER),
    # Revoking the already revoked link: harmless for the allowed, so every cell can be probed.
    Op("DELETE", "/api/invites/{code}", "/api/invites/{w.invite_revoked}", OWNER),
    Op("GET", "/api/invites/{code}", "/api/invites/{w.invite_a}", PUBLIC),
    Op("GET", "/api/invites/{code}/qr.svg", "/api/invites/{w.invite_a}/qr.svg", PUBLIC),
    Op("POST", "/api/signup", "/api/signup", PUBLIC, json={}),
    # A revoked link: the signed-in get past auth to 410 (no one joins community A here).
    Op("POST", "/api/invites/{code}/accept", "/api/invites/{w.invite_revoked}/accept", USERS),
    Op("GET", "/api/auth/providers", "/api/auth/providers", PUBLIC),
    Op("POST", "/api/auth/wechat/start", "/api/auth/wechat/start", PUBLIC, json={}),
    Op("POST", "/api/auth/wechat/callback", "/api/auth/wechat/callback", PUBLIC, json={}),
    # Join requests and members are worked by the community's managers only (host A, admins,
    # A's 团长);
    # an unknown user: the allowed get 404 after the check, nothing is decided.
    Op("GET", "/api/communities/{id}/join-requests", "/api/communities/{w.community_a}/join-requests",
       WORKS_A),
    Op("POST", "/api/communities/{id}/join-requests/{user_id}/approve",
       f"/api/communities/{{w.community_a}}/join-requests/{NO_SUCH}/approve", WORKS_A),
    Op("POST", "/api/communities/{id}/join-requests/{user_id}/reject",
       f"/api/communities/{{w.community_a}}/join-requests/{NO_SUCH}/reject", WORKS_A),
    Op("GET", "/api/communities/{id}/members", "/api/communities/{w.community_a}/members?q=a",
       WORKS_A),
    Op("DELETE", "/api/communities/{id}/members/{user_id}",
       f"/api/communities/{{w.community_a}}/members/{NO_SUCH}", WORKS_A),
    # 团长: appointed and dismissed by the community's owner; its managers list them, tag its
    # members and send them a notice (a blank one: refused after the check, nothing is sent).
    Op("GET", "/api/me/communities", "/api/me/communities", USERS),
    Op("GET", "/api/communities/{id}/leaders", "/api/communities/{w.community_a}/leaders", WORKS_A),
    Op("PUT", "/api/communities/{id}/leaders/{user_id}",
       f"/api/communities/{{w.community_a}}/leaders/{NO_SUCH}", OWNER),
    Op("DELETE", "/api/communities/{id}/leaders/{user_id}",
       f"/api/communities/{{w.community_a}}/leaders/{NO_SUCH}", OWNER),
    Op("PUT", "/api/communities/{id}/members/{user_id}/tags",
       f"/api/communities/{{w.community_a}}/members/{NO_SUCH}/tags", WORKS_A, json={"tags": []}),
    Op("POST", "/api/communities/{id}/notices", "/api/communities/{w.community_a}/notices", WORKS_A,
       json={"text": "   "}, idempotency=True),
    Op("GET", "/api/communities/{id}/notices", "/api/communities/{w.community_a}/notices", WORKS_A),
    Op("GET", "/communities", "/communities", PUBLIC),
    # --- sessions ----------------------------------------------------------------------------
    Op("POST", "/api/sessions", "/api/sessions", HOSTS, json={}),
    Op("GET", "/api/sessions", "/api/sessions", PUBLIC),
    Op("GET", "/api/sessions/{id}", "/api/sessions/{w.session_a}", PUBLIC),
    Op("POST", "/api/sessions/{id}/end", "/api/sessions/{w.session_end}/end", OWNER),
    # A stream key is rotated by its session's host (still a host) or an admin only.
    Op("POST", "/api/sessions/{id}/stream-key", "/api/sessions/{w.session_end}/stream-key", OWNER,
       json={}),
    # A guest on camera: the session's host (or an admin) invites, reads and ends; only the
    # invited user publishes (nobody is invited in this world, so everyone is refused).
    Op("POST", "/api/sessions/{id}/guest", "/api/sessions/{w.session_a}/guest", OWNER,
       json={"user_id": NO_SUCH}),
    Op("GET", "/api/sessions/{id}/guest", "/api/sessions/{w.session_a}/guest", OWNER),
    Op("DELETE", "/api/sessions/{id}/guest", "/api/sessions/{w.session_a}/guest", OWNER),
    Op("POST", "/api/sessions/{id}/guest/whip", "/api/sessions/{w.session_a}/guest/whip",
       frozenset(), data=SDP_OFFER, content_type="application/sdp"),
    Op("GET", "/guest/{id}", "/guest/{w.session_a}", PUBLIC),
    # --- pages: static shells, public; what they show comes from the API --------------------
    Op("GET", "/", "/", PUBLIC),
    Op("GET", "/login", "/login", PUBLIC),
    Op("GET", "/live/{id}", "/live/{w.session_a}", PUBLIC),
    Op("GET", "/host/{id}", "/host/{w.session_a}", PUBLIC),
    Op("GET", "/moderate/{id}", "/moderate/{w.session_a}", PUBLIC),
    Op("GET", "/replays", "/replays", PUBLIC),
    Op("GET", "/replays/{id}", "/replays/{w.session_a}", PUBLIC),
    Op("GET", "/orders", "/orders", PUBLIC),
    Op("GET", "/pickup", "/pickup", PUBLIC),
    Op("GET", "/nps/{id}", "/nps/{w.order_picked}", PUBLIC),
    Op("GET", "/trace/{batch_code}", "/trace/{w.batch_code_a}", PUBLIC),
    Op("GET", "/dashboard", "/dashboard", PUBLIC),
    Op("GET", "/preview/{id}", "/preview/{w.session_a}", PUBLIC),
    Op("GET", "/me", "/me", PUBLIC),
    Op("GET", "/studio", "/studio", PUBLIC),
    Op("GET", "/catalog", "/catalog", PUBLIC),
    # --- notifications, 预约, previews, interest tags: one's own only ------------------------
    Op("GET", "/api/notifications", "/api/notifications", USERS),
    Op("POST", "/api/notifications/read", "/api/notifications/read", USERS, json={"all": True}),
    Op("POST", "/api/sessions/{id}/subscribe", "/api/sessions/{w.session_a}/subscribe", USERS),
    Op("DELETE", "/api/sessions/{id}/subscribe", "/api/sessions/{w.session_a}/subscribe", USERS),
    Op("GET", "/api/sessions/{id}/preview", "/api/sessions/{w.session_a}/preview", PUBLIC),
    Op("PUT", "/api/sessions/{id}/preview", "/api/sessions/{w.session_a}/preview", OWNER,
       json={"preview_text": "今晚八点见"}),
    Op("PUT", "/api/sessions/{id}/preview", "/api/sessions/{w.session_a}/preview", ADMIN,
       variant="another host's product", json=lambda w: {"product_ids": [w.product_b]}),
    Op("GET", "/api/me/tags", "/api/me/tags", USERS),
    Op("PUT", "/api/me/tags", "/api/me/tags", USERS, json={"tags": ["baking"]}),
    Op("GET", "/invites", "/invites", PUBLIC),
    Op("GET", "/join/{code}", "/join/{w.invite_a}", PUBLIC),
    Op("GET", "/auth/wechat/callback", "/auth/wechat/callback", PUBLIC),
    # --- catalog: hosts list, anyone reads ---------------------------------------------------
    Op("POST", "/api/products", "/api/products", HOSTS, json={}),
    Op("GET", "/api/products", "/api/products", HOSTS),
    Op("GET", "/api/products/{id}", "/api/products/{w.product_a}", PUBLIC),
    Op("PATCH", "/api/products/{id}", "/api/products/{w.product_a}", OWNER, json={"unit": "箱"}),
    Op("PATCH", "/api/products/{id}", "/api/products/{w.product_b}", ADMIN | {"other_host"},
       variant="another host's product", json={"unit": "瓶"}),
    Op("POST", "/api/batches", "/api/batches", HOSTS, json={}),
    Op("GET", "/api/batches", "/api/batches", HOSTS),
    Op("GET", "/api/batches/{id}", "/api/batches/{w.batch_a}", PUBLIC),
    # --- sales and group-buys: the session's own host ----------------------------------------
    Op("POST", "/api/sessions/{id}/sales", "/api/sessions/{w.session_a}/sales", OWNER,
       json={"product_id": NO_SUCH, "stock": 1, "price_fen": 1, "per_buyer_limit": 1}),
    Op("POST", "/api/sessions/{id}/sales", "/api/sessions/{w.session_a}/sales", ADMIN,
       variant="another host's product", special=(("host", "403"),),
       json=lambda w: {"product_id": w.product_b, "stock": 1, "price_fen": 1, "per_buyer_limit": 1,
                       "starts_at": SOON}),
    Op("GET", "/api/sessions/{id}/sales", "/api/sessions/{w.session_a}/sales", PUBLIC),
    Op("GET", "/api/sales/{id}", "/api/sales/{w.sale_a}", PUBLIC),
    Op("POST", "/api/sales/{id}/close", "/api/sales/{w.sale_close}/close", OWNER),
    Op("POST", "/api/sales/{id}/group-buys", "/api/sales/{w.sale_a}/group-buys", OWNER,
       json={"community_id": NO_SUCH, "threshold": 2, "deadline": SOON, "group_price_fen": 1}),
    Op("GET", "/api/sales/{id}/group-buys", "/api/sales/{w.sale_a}/group-buys", PUBLIC),
    Op("GET", "/api/group-buys/{id}", "/api/group-buys/{w.group_buy}", PUBLIC),
    # --- holds and orders: any signed-in account may buy; a hold or order is its buyer's -----
    Op("POST", "/api/sales/{id}/holds", "/api/sales/{w.sale_a}/holds", USERS, json={"qty": 1},
       idempotency=True, variant="open sale"),
    Op("POST", "/api/sales/{id}/holds", "/api/sales/{w.sale_members}/holds", frozenset({"member"}),
       json={"qty": 1}, idempotency=True, variant="members-only sale",
       special=tuple((role, NOT_MEMBER) for role in USERS - {"member"})),
    Op("POST", "/api/holds/{id}/pay", "/api/holds/{w.hold_pay}/pay", BUYER),
    Op("DELETE", "/api/holds/{id}", "/api/holds/{w.hold_release}", BUYER | ADMIN),
    Op("POST", "/api/payments/callback", "/api/payments/callback", PUBLIC, json={}),
    # WeChat Pay's notifications: anyone may deliver one, only WeChat Pay's signature makes it
    # count (tests/test_wechatpay.py); without WeChat Pay configured they are 404.
    Op("POST", "/api/payments/wechatpay/notify", "/api/payments/wechatpay/notify", PUBLIC,
       json={}),
    Op("POST", "/api/payments/wechatpay/refund-notify", "/api/payments/wechatpay/refund-notify",
       PUBLIC, json={}),
    # Alipay's form notification: anyone may post one; the signature decides (here: Alipay is
    # not configured, so 404 after the auth check).
    Op("POST", "/api/payments/alipay/notify", "/api/payments/alipay/notify", PUBLIC,
       data=b"out_trade_no=1-1", content_type="application/x-www-form-urlencoded"),
    Op("GET", "/api/payments/methods", "/api/payments/methods", USERS),
    Op("GET", "/api/payments/reconciliations", "/api/payments/reconciliations", ADMIN),
    Op("GET", "/api/payments/ledger", "/api/payments/ledger?order_id={w.order_paid}", ADMIN),
    # Everyone signed in lists orders, each within her tenancy (see test_what_each_role_sees);
    # the CSV and the batch mark-ready are staff's, scoped per order inside.
    Op("GET", "/api/orders", "/api/orders", USERS),
    Op("GET", "/api/orders", "/api/orders?session_id={w.session_a}&status=paid", USERS,
       variant="filtered"),
    Op("GET", "/api/orders.csv", "/api/orders.csv", PLATFORM_STAFF | {"leader"}),
    Op("POST", "/api/orders/ready", "/api/orders/ready", PLATFORM_STAFF | {"leader"},
       json=lambda w: {"order_ids": [w.order_refunded]}),
    Op("GET", "/api/orders/{id}/pickup-qr.svg", "/api/orders/{w.order_paid}/pickup-qr.svg", BUYER),
    Op("GET", "/api/orders/{id}", "/api/orders/{w.order_paid}", BUYER_OR_STAFF),
    # Fulfilment probes use a refunded order: the allowed get 409 (no such transition).
    Op("POST", "/api/orders/{id}/ready", "/api/orders/{w.order_refunded}/ready", STAFF_OF),
    Op("POST", "/api/orders/{id}/picked-up", "/api/orders/{w.order_refunded}/picked-up", STAFF_OF,
       json={"pickup_code": "000000"}),
    Op("POST", "/api/orders/{id}/delivered", "/api/orders/{w.order_refunded}/delivered", STAFF_OF),
    Op("POST", "/api/orders/{id}/complete", "/api/orders/{w.order_refunded}/complete",
       BUYER_OR_STAFF),
    Op("POST", "/api/orders/{id}/refund", "/api/orders/{w.order_refunded}/refund", STAFF_OF,
       json={}),
    Op("GET", "/api/reconcile", "/api/reconcile", ADMIN),
    Op("POST", "/api/reconcile", "/api/reconcile", ADMIN),
    # --- trust evidence: the batch's host files it, anyone reads it --------------------------
    Op("POST", "/api/uploads", "/api/uploads", USERS, data=b"not a photo"),
    # A claim photo: whoever may see the claim (its buyer, the session's host, assistants,
    # admins). Knowing the file's name is not enough: another host gets 403, anonymous 401.
    Op("GET", "/api/uploads/{name}", "{w.upload_url}", BUYER_OR_STAFF),
    Op("POST", "/api/batches/{code}/qc-reports", "/api/batches/{w.batch_code_a}/qc-reports", OWNER,
       json={"tester": "小美", "tested_at": "2026-05-01T06:00:00+00:00",
             "measurements": [{"kind": "brix"}]}),
    Op("GET", "/api/batches/{code}/qc-reports", "/api/batches/{w.batch_code_a}/qc-reports", PUBLIC),
    Op("POST", "/api/batches/{code}/trace-events", "/api/batches/{w.batch_code_a}/trace-events",
       OWNER, json={"kind": "cold_chain"}),
    Op("GET", "/api/batches/{code}/summary", "/api/batches/{w.batch_code_a}/summary", PUBLIC),
    Op("GET", "/api/trace/{batch_code}", "/api/trace/{w.batch_code_a}", PUBLIC),
    Op("GET", "/api/trace/{batch_code}/verify", "/api/trace/{w.batch_code_a}/verify", PUBLIC),
    Op("GET", "/api/trace-signing-key", "/api/trace-signing-key", PUBLIC),
    Op("GET", "/api/batches/{code}/qr.svg", "/api/batches/{w.batch_code_a}/qr.svg", PUBLIC),
    Op("GET", "/api/batches/{code}/qr.png", "/api/batches/{w.batch_code_a}/qr.png", PUBLIC),
    # --- reviews, claims, NPS: the buyer of the order; the paid order is not picked up (409) -
    Op("POST", "/api/reviews", "/api/reviews", BUYER,
       json=lambda w: {"order_id": w.order_paid, "stars": 5}),
    Op("GET", "/api/batches/{code}/reviews", "/api/batches/{w.batch_code_a}/reviews", PUBLIC),
    Op("GET", "/api/products/{id}/reviews", "/api/products/{w.product_a}/reviews", PUBLIC),
    Op("PUT", "/api/products/{id}/claim-policy", "/api/products/{w.product_a}/claim-policy", OWNER,
       json={}),
    Op("GET", "/api/products/{id}/claim-policy", "/api/products/{w.product_a}/claim-policy", PUBLIC),
    Op("POST", "/api/claims", "/api/claims", BUYER,
       json=lambda w: {"order_id": w.order_paid, "reason": "spoiled"}),
    # The queue: platform staff; a host's queue holds the claims of their own sessions only.
    Op("GET", "/api/claims", "/api/claims?status=all", PLATFORM_STAFF),
    Op("GET", "/api/claims/mine", "/api/claims/mine", USERS),
    Op("GET", "/api/claims/{id}", "/api/claims/{w.claim}", BUYER_OR_STAFF),
    # Only the claim's own buyer adds photos (the seeded claim is decided: 409 past auth).
    Op("POST", "/api/claims/{id}/photos", "/api/claims/{w.claim}/photos", BUYER,
       json={"photos": [1]}),
    # The buyer's own compensation, waiting for an account: none waits here (404 past auth).
    Op("POST", "/api/claims/{id}/compensation", "/api/claims/{w.claim}/compensation", BUYER),
    Op("POST", "/api/claims/{id}/approve", "/api/claims/{w.claim}/approve", DECIDERS, json={}),
    Op("POST", "/api/claims/{id}/reject", "/api/claims/{w.claim}/reject", DECIDERS, json={}),
    Op("POST", "/api/claims/{id}/reship", "/api/claims/{w.claim}/reship", DECIDERS,
       json={"note": "补发一箱"}),
    # Reviews: public lists (with the host's replies); only the product's host answers.
    Op("GET", "/api/sessions/{id}/reviews", "/api/sessions/{w.session_a}/reviews", PUBLIC),
    Op("PUT", "/api/reviews/{id}/reply", "/api/reviews/{w.review}/reply", OWNER,
       json={"text": "谢谢支持"}),
    # NPS report: platform staff; a host only for his own sessions.
    Op("GET", "/api/nps/report", "/api/nps/report?session_id={w.session_a}", STAFF_OF),
    Op("GET", "/api/nps/report", "/api/nps/report", PLATFORM_STAFF),
    Op("GET", "/claims", "/claims", PUBLIC),
    Op("GET", "/reviews", "/reviews", PUBLIC),
    Op("GET", "/api/sessions/{id}/claim-flags", "/api/sessions/{w.session_a}/claim-flags", PUBLIC),
    Op("GET", "/api/orders/{id}/after-sales", "/api/orders/{w.order_paid}/after-sales",
       BUYER_OR_STAFF),
    Op("POST", "/api/nps", "/api/nps", BUYER, json=lambda w: {"order_id": w.order_paid, "score": 9}),
    Op("GET", "/api/nps/pending", "/api/nps/pending", USERS),
    # --- dashboard: platform staff (a host's figures are their own sessions') ----------------
    Op("GET", "/api/dashboard", "/api/dashboard", PLATFORM_STAFF),
    Op("GET", "/api/dashboard.csv", "/api/dashboard.csv", PLATFORM_STAFF),
    Op("GET", "/api/dashboard.csv", "/api/dashboard.csv?figure=cohorts", PLATFORM_STAFF,
       variant="a figure's CSV"),
    Op("GET", "/api/dashboard/charts/{metric}.svg", "/api/dashboard/charts/group_buys_by_community.svg",
       PLATFORM_STAFF, special=tuple((role, "401") for role in NON_STAFF), variant="a figure's chart"),
    # A chart needs a staff token or a signed link; without either it is 401 for anyone.
    Op("GET", "/api/dashboard/charts/{metric}.svg", f"/api/dashboard/charts/{METRICS[0]}.svg",
       PLATFORM_STAFF, special=tuple((role, "401") for role in NON_STAFF)),
    Op("GET", "/api/dashboard/charts/{metric}.svg", "{w.chart_url}", PUBLIC, variant="signed link"),
    # --- referrals and commission: one's own link and earnings; rates on one's own products
    # and sessions; the payout report and payouts are the hosts' (each his own sessions'
    # commissions) and the admins' (all) ------------------------------------------------------
    Op("GET", "/referrals", "/referrals", PUBLIC),
    Op("GET", "/commissions", "/commissions", PUBLIC),
    Op("GET", "/api/referrals/me", "/api/referrals/me", USERS),
    Op("POST", "/api/referrals/arrivals", "/api/referrals/arrivals", USERS,
       json={"code": "AAAAAAAAAAAA"}),
    Op("GET", "/api/commission-rates", "/api/commission-rates", HOSTS),
    Op("PUT", "/api/commission-rates", "/api/commission-rates", OWNER,
       json=lambda w: {"scope": "session", "target_id": w.session_a, "kind": "referral",
                       "rate_bp": 0}),
    Op("PUT", "/api/commission-rates", "/api/commission-rates", OWNER, variant="a product",
       json=lambda w: {"scope": "product", "target_id": w.product_a, "kind": "community",
                       "rate_bp": 0}),
    Op("GET", "/api/commissions/report", "/api/commissions/report", HOSTS),
    Op("GET", "/api/commissions/report.csv", "/api/commissions/report.csv", HOSTS),
    Op("GET", "/api/commissions/payouts", "/api/commissions/payouts", HOSTS),
    # Nothing is due to the viewer: the payer's 409 nothing_due proves the role passed.
    Op("POST", "/api/commissions/payouts", "/api/commissions/payouts", HOSTS,
       json=lambda w: {"beneficiary_id": w.ids["viewer"], "period": "2026-12"}),
    # --- live room over REST: pins are the host's, moderation the session's staff's ----------
    Op("POST", "/api/sessions/{id}/pin", "/api/sessions/{w.session_a}/pin", OWNER,
       json={"product_id": NO_SUCH}),
    Op("POST", "/api/sessions/{id}/pin", "/api/sessions/{w.session_a}/pin", ADMIN,
       variant="another host's product", json=lambda w: {"product_id": w.product_b}),
    Op("DELETE", "/api/sessions/{id}/pin", "/api/sessions/{w.session_a}/pin", OWNER),
    Op("GET", "/api/sessions/{id}/questions", "/api/sessions/{w.session_a}/questions", PUBLIC),
    Op("GET", "/api/sessions/{id}/moderation", "/api/sessions/{w.session_a}/moderation", STAFF_OF),
    Op("POST", "/api/sessions/{id}/mutes", "/api/sessions/{w.session_a}/mutes", STAFF_OF,
       json=lambda w: {"user_id": w.troll, "duration_s": 60}),
    Op("POST", "/api/sessions/{id}/bans", "/api/sessions/{w.session_a}/bans", STAFF_OF,
       json=lambda w: {"user_id": w.troll, "duration_s": 60}),
    # Sanctions by rank: never the session's host, never an admin; an assistant only by the
    # session's host or an admin; another host only by an admin.
    Op("POST", "/api/sessions/{id}/bans", "/api/sessions/{w.session_a}/bans", frozenset(),
       variant="the session's host", special=CANNOT_SANCTION,
       json=lambda w: {"user_id": w.ids["host"], "duration_s": 60}),
    Op("POST", "/api/sessions/{id}/mutes", "/api/sessions/{w.session_a}/mutes", frozenset(),
       variant="an admin", special=CANNOT_SANCTION,
       json=lambda w: {"user_id": w.other_admin, "duration_s": 60}),
    Op("POST", "/api/sessions/{id}/bans", "/api/sessions/{w.session_a}/bans", frozenset(),
       variant="an admin", special=CANNOT_SANCTION,
       json=lambda w: {"user_id": w.other_admin, "duration_s": 60}),
    Op("POST", "/api/sessions/{id}/mutes", "/api/sessions/{w.session_a}/mutes",
       frozenset({"host", "admin"}), variant="an assistant",
       special=(("assistant", "403:cannot_sanction"),),
       json=lambda w: {"user_id": w.other_assistant, "duration_s": 60}),
    # (A mute, not a ban: a ban would keep other_host out of room A for the socket cells.)
    Op("POST", "/api/sessions/{id}/mutes", "/api/sessions/{w.session_a}/mutes", ADMIN,
       variant="another host", special=(("host", "403:cannot_sanction"),
                                        ("assistant", "403:cannot_sanction")),
       json=lambda w: {"user_id": w.ids["other_host"], "duration_s": 60}),
    Op("DELETE", "/api/sessions/{id}/mutes/{user_id}",
       "/api/sessions/{w.session_a}/mutes/{w.troll}", STAFF_OF),
    Op("DELETE", "/api/sessions/{id}/bans/{user_id}", "/api/sessions/{w.session_a}/bans/{w.troll}",
       STAFF_OF),
    Op("DELETE", "/api/sessions/{id}/comments/{seq}",
       f"/api/sessions/{{w.session_a}}/comments/{NO_SUCH}", STAFF_OF),
    # --- media: WHIP takes the stream key, not a login. The own host sends the session's key,
    # the other host the key of their own session (403); a login token is no key (401). The
    # probe session has ended, so the right key gets 409.
    Op("POST", "/whip/{id}", "/whip/{w.session_ended}", frozenset({"host"}), data=SDP_OFFER,
       content_type="application/sdp", stream_key=True, special=NOT_A_KEY),
    Op("DELETE", "/whip/{id}/{resource}", "/whip/{w.session_ended}/nope", frozenset({"host"}),
       stream_key=True, special=NOT_A_KEY),
    Op("POST", "/whep/{id}", "/whep/{w.session_a}", PUBLIC, data=SDP_OFFER,
       content_type="application/sdp"),
    Op("DELETE", "/whep/{id}/{resource}", "/whep/{w.session_a}/nope", PUBLIC),
    # CORS preflights: browsers send them without credentials.
    Op("OPTIONS", "/whip/{id}", "/whip/{w.session_a}", PUBLIC),
    Op("OPTIONS", "/whip/{id}/{resource}", "/whip/{w.session_a}/nope", PUBLIC),
    Op("OPTIONS", "/whep/{id}", "/whep/{w.session_a}", PUBLIC),
    Op("OPTIONS", "/whep/{id}/{resource}", "/whep/{w.session_a}/nope", PUBLIC),
    Op("GET", "/hls/{session_id}/{name}", "/hls/{w.session_a}/index.m3u8", PUBLIC),
    Op("GET", "/hls/{session_id}/360p/{name}", "/hls/{w.session_a}/360p/index.m3u8", PUBLIC),
    Op("GET", "/replays/{session_id}/{name}", "/replays/{w.session_a}/index.m3u8", PUBLIC),
    Op("GET", "/api/sessions/{id}/replay", "/api/sessions/{w.session_a}/replay", PUBLIC),
    Op("GET", "/api/sessions/{id}/share", "/api/sessions/{w.session_a}/share", PUBLIC),
    Op("GET", "/api/sessions/{id}/qr.svg", "/api/sessions/{w.session_a}/qr.svg", PUBLIC),
    Op("GET", "/favicon.ico", "/favicon.ico", PUBLIC),
    Op("POST", "/api/sessions/{id}/replay", "/api/sessions/{w.session_ended}/replay", OWNER),
    Op("GET", "/api/replays", "/api/replays", PUBLIC),
    # --- 品鉴官 programmes: a host runs his own; neighbours apply; the member list is his ------
    Op("GET", "/api/koc/programmes", "/api/koc/programmes", PUBLIC),
    Op("GET", "/api/koc/programmes/hosted", "/api/koc/programmes/hosted", HOSTS),
    Op("POST", "/api/koc/programmes", "/api/koc/programmes", HOSTS, json={}),
    Op("GET", "/api/koc/programmes/{id}", "/api/koc/programmes/{w.programme_a}", PUBLIC),
    Op("PATCH", "/api/koc/programmes/{id}", "/api/koc/programmes/{w.programme_a}", OWNER, json={}),
    Op("POST", "/api/koc/programmes/{id}/apply", f"/api/koc/programmes/{NO_SUCH}/apply", USERS,
       json={}),
    Op("GET", "/api/koc/programmes/{id}/applications",
       "/api/koc/programmes/{w.programme_a}/applications", OWNER),
    # The first allowed caller selects (or rejects) the waiting application; the rest get 409.
    Op("POST", "/api/koc/applications/{id}/select", "/api/koc/applications/{w.application_a}/select",
       OWNER),
    Op("POST", "/api/koc/applications/{id}/reject", "/api/koc/applications/{w.application_a}/reject",
       OWNER),
    Op("GET", "/api/koc/me", "/api/koc/me", USERS),
    # Samples come out of the host's own batch; a neighbour who is no member gets 409 (not_koc).
    Op("PUT", "/api/koc/batches/{id}/sample-stock", "/api/koc/batches/{w.batch_a}/sample-stock",
       OWNER, json={"units": 0}),
    Op("GET", "/api/koc/batches/{id}/samples", "/api/koc/batches/{w.batch_a}/samples", OWNER),
    Op("POST", "/api/koc/samples", "/api/koc/samples", OWNER,
       json=lambda w: {"product_id": w.product_a, "user_id": w.troll}),
    Op("GET", "/api/koc/samples/mine", "/api/koc/samples/mine", USERS),
    Op("GET", "/api/u/{id}", "/api/u/{w.ids[viewer]}", PUBLIC),
    # --- 晒单: its author's verified order; assistants moderate; the archive is public --------
    Op("POST", "/api/ugc/posts", "/api/ugc/posts", USERS, json={}),
    # Not a video: the signed-in get past auth to 415.
    Op("POST", "/api/ugc/videos", "/api/ugc/videos", USERS, data=b"not a video",
       content_type="video/mp4"),
    Op("GET", "/api/ugc/queue", "/api/ugc/queue", DECIDERS),
    Op("POST", "/api/ugc/posts/{id}/approve", f"/api/ugc/posts/{NO_SUCH}/approve", DECIDERS),
    Op("POST", "/api/ugc/posts/{id}/hide", f"/api/ugc/posts/{NO_SUCH}/hide", DECIDERS),
    Op("GET", "/api/batches/{code}/ugc", "/api/batches/{w.batch_code_a}/ugc", PUBLIC),
    Op("GET", "/api/products/{id}/ugc", "/api/products/{w.product_a}/ugc", PUBLIC),
    Op("POST", "/api/ugc/campaigns", "/api/ugc/campaigns", HOSTS, json={}),
    Op("GET", "/api/ugc/campaigns", "/api/ugc/campaigns", PUBLIC),
    # --- trust points: one's own; perks offered by hosts; a helpful question by its staff ----
    Op("GET", "/api/points/me", "/api/points/me", USERS),
    Op("GET", "/api/points/perks", "/api/points/perks", PUBLIC),
    Op("POST", "/api/points/perks", "/api/points/perks", HOSTS, json={}),
    Op("POST", "/api/points/perks/{id}/redeem", f"/api/points/perks/{NO_SUCH}/redeem", USERS,
       idempotency=True),
    Op("POST", "/api/questions/{id}/helpful", "/api/questions/{w.question}/helpful", STAFF_OF),
    Op("GET", "/koc", "/koc", PUBLIC),
    Op("GET", "/koc/admin", "/koc/admin", PUBLIC),
    Op("GET", "/ugc/new", "/ugc/new", PUBLIC),
    Op("GET", "/ugc/moderate", "/ugc/moderate", PUBLIC),
    Op("GET", "/u/{id}", "/u/{w.ids[viewer]}", PUBLIC),
)

# Router prefixes that are not API operations: files from web/ and the Socket.IO endpoint
# (whose events are the SOCKET table below).
NOT_OPERATIONS = ("/static", "/vendor/", "/socket.io/")

QUESTION = {"question_id": NO_SUCH}
SOCKET: tuple[Event, ...] = (
    # /live: anyone watches; signed-in people take part; pins are the host's.
    Event("/live", "connect", PUBLIC),
    Event("/live", "comment", USERS, {"text": "矩阵测试 / matrix check"}),
    Event("/live", "question", USERS, {"text": "能送到小区门口吗?"}),
    Event("/live", "upvote", USERS, QUESTION),
    Event("/live", "like", USERS, {}),
    Event("/live", "pin_product", OWNER, {"product_id": NO_SUCH}),
    Event("/live", "unpin_product", OWNER, {}),
    # /me: one's own notifications; signed-in people only.
    Event("/me", "connect", USERS),
    # /moderation: the session's staff connect; only its host (or an admin) pins products.
    Event("/moderation", "connect", STAFF_OF),
    Event("/moderation", "delete_comment", STAFF_OF, {"seq": NO_SUCH}),
    Event("/moderation", "mute", STAFF_OF, lambda w: {"user_id": w.troll, "duration_s": 60}),
    Event("/moderation", "unmute", STAFF_OF, lambda w: {"user_id": w.troll}),
    Event("/moderation", "ban", STAFF_OF, lambda w: {"user_id": w.troll, "duration_s": 60}),
    Event("/moderation", "unban", STAFF_OF, lambda w: {"user_id": w.troll}),
    Event("/moderation", "ban", frozenset(), lambda w: {"user_id": w.ids["host"]},
          variant="the session's host", special=CANNOT_SANCTION),
    Event("/moderation", "mute", frozenset(), lambda w: {"user_id": w.other_admin},
          variant="an admin", special=CANNOT_SANCTION),
    Event("/moderation", "mute", frozenset({"host", "admin"}),
          lambda w: {"user_id": w.other_assistant, "duration_s": 60}, variant="an assistant",
          special=(("assistant", "403:cannot_sanction"),)),
    Event("/moderation", "slow_mode", STAFF_OF, {"seconds": 0}),
    Event("/moderation", "banned_words", STAFF_OF, {"words": []}),
    Event("/moderation", "approve", STAFF_OF, QUESTION),
    Event("/moderation", "reject", STAFF_OF, QUESTION),
    Event("/moderation", "merge", STAFF_OF, {"question_id": NO_SUCH, "into_id": NO_SUCH - 1}),
    Event("/moderation", "answer", STAFF_OF, {"question_id": NO_SUCH, "text": "可以"}),
    Event("/moderation", "pin_question", STAFF_OF, QUESTION),
    Event("/moderation", "unpin_question", STAFF_OF, {}),
    Event("/moderation", "pin_product", OWNER, {"product_id": NO_SUCH}),
    Event("/moderation", "unpin_product", OWNER, {}),
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    redis = Redis.from_url(redis_url)
    await redis.flushall()  # sale ids restart with the fresh SQLite file: no stale sale keys
    await redis.aclose()
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("authz")) / "var", redis_url=redis_url,
        database_url=None, secret_key=secrets.token_urlsafe(32), admin_password=ADMIN_PASSWORD,
        demo=False, hold_ttl_s=3600, rtmp_port=-1,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings, fast_passwords=True)))
    await client.start_server()
    try:
        resp = await client.post("/api/auth/token",
                                 json={"username": "admin", "password": ADMIN_PASSWORD})
        assert resp.status == 200, await resp.text()
        yield await seed_world(Api(client, (await resp.json())["token"]))
    finally:
        await client.close()


async def test_matrix_names_every_route(world: World) -> None:
    doc = await (await world.client.get("/api/openapi.json")).json()
    in_app = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    for route in world.api.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method != "HEAD" and not path.startswith(NOT_OPERATIONS):
            in_app.add((route.method, path))
    in_table = {(op.method, op.route) for op in REST}
    assert sorted(in_app - in_table) == [], "routes missing from the authorization matrix"
    assert sorted(in_table - in_app) == [], "matrix rows for routes the app no longer has"


def _namespace_classes() -> set[type[GuardedNamespace]]:
    for info in pkgutil.walk_packages(realtime.__path__, "realtime."):
        importlib.import_module(info.name)
    found: set[type[GuardedNamespace]] = set()
    todo = [GuardedNamespace]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return {cls for cls in found if not inspect.isabstract(cls)}


async def test_matrix_names_every_socket_event(world: World) -> None:
    registered = world.api.app[hub_key].sio.namespace_handlers
    unguarded = [ns for ns, handler in registered.items() if not isinstance(handler, GuardedNamespace)]
    assert unguarded == [], "namespaces that bypass realtime.guard (no event allow-list)"
    assert {type(h) for h in registered.values()} == _namespace_classes(), \
        "a GuardedNamespace in realtime/ is not registered (or vice versa)"
    in_app = {(ns, "connect") for ns in registered}
    for ns, handler in registered.items():
        assert set(handler.handlers()) == set(handler.client_events), ns
        in_app |= {(ns, name) for name in handler.client_events}
    in_table = {(event.namespace, event.name) for event in SOCKET}
    assert sorted(in_app - in_table) == [], "socket events missing from the authorization matrix"
    assert sorted(in_table - in_app) == [], "matrix rows for socket events that no longer exist"


@pytest.mark.parametrize("op", REST, ids=[op.id for op in REST])
async def test_rest_cell(world: World, op: Op) -> None:
    wrong = []
    for role in deny_first(ROLES, op.expect):
        status, code = await op.call(world, role)
        if not matches(op.expect(role), status, code):
            wrong.append(f"{role}: expected {op.expect(role)}, got {status} {code}")
    assert wrong == [], f"{op.id}: " + "; ".join(wrong)


async def _socket_row(w: World, role: str, namespace: str) -> dict[str, tuple[str, str]]:
    """What `role` gets for connecting to room A's `namespace` and for each of its events."""
    auth: dict[str, object] = {"session_id": w.session_a}
    if w.tokens[role]:
        auth["token"] = w.tokens[role]
    client, connected = await socket_connect(w.url, namespace, auth)
    row = {f"{namespace} connect": (connected, "")}
    events = [e for e in SOCKET if e.namespace == namespace and e.name != "connect"]
    if client is None:
        return row | {e.id: (connected, "refused at connect") for e in events}
    try:
        for event in events:
            ack = await client.call(event.name, event.body(w), namespace=namespace, timeout=10)
            row[event.id] = socket_class(ack)
    finally:
        await client.disconnect()
    return row


async def test_socket_cells(world: World) -> None:
    namespaces = sorted({e.namespace for e in SOCKET})
    rows = await asyncio.gather(*(_socket_row(world, role, ns)
                                  for role in ROLES for ns in namespaces))
    got = {(role, ns): row for (role, ns), row in
           zip([(r, n) for r in ROLES for n in namespaces], rows, strict=True)}
    wrong = []
    for event in SOCKET:
        for role in ROLES:
            outcome, detail = got[(role, event.namespace)][event.id]
            if outcome != event.expect(role):
                wrong.append(f"{event.id} {role}: expected {event.expect(role)}, "
                             f"got {outcome} {detail}")
    assert wrong == []


async def test_what_each_role_sees(world: World) -> None:
    """Reads that are open to several roles but show each only what is theirs to see."""
    w = world

    async def get(path: str, role: str) -> object:
        resp = await w.client.get(path, headers=w.headers(role))
        assert resp.status == 200, f"{path} as {role}: {await resp.text()}"
        return await resp.json()

    for role in ROLES:
        session = await get(f"/api/sessions/{w.session_a}", role)
        assert isinstance(session, dict)
        assert ("stream_key" in session) == (role in OWNER), role
        listed = await get(f"/api/sessions/{w.session_a}/questions", role)
        assert isinstance(listed, list)
        assert (w.question in {q["id"] for q in listed}) == (role in STAFF_OF), role
    for role in BUYER_OR_STAFF:
        order = await get(f"/api/orders/{w.order_paid}", role)
        assert isinstance(order, dict)
        assert bool(order.get("pickup_code")) == (role == "buyer"), role
    for role in PLATFORM_STAFF:
        queue = await get("/api/claims?status=all", role)
        assert isinstance(queue, list)
        assert (w.claim in {c["id"] for c in queue}) == (role != "other_host"), role
        board = await get("/api/dashboard?by=session", role)
        assert isinstance(board, dict)
        labels = {str(row.get("key")) for row in board["rows"]}
        assert (str(w.session_a) in labels) == (role != "other_host"), (role, labels)
        # The other host's headline, cohorts and group-buys are of their own shop only.
        assert (board["headline"]["counts"]["orders"] > 0) == (role != "other_host"), role
        assert (len(board["cohorts"]) > 0) == (role != "other_host"), role
    for role in USERS - BUYER:
        # The buyer's order and claim notices never reach anyone else (the viewer may have her
        # own 品鉴官 selection, made by the matrix's select cell).
        notices = await get("/api/notifications", role)
        assert isinstance(notices, dict), role
        assert {n["kind"] for n in notices["items"]} <= {"koc_selected"}, (role, notices)
    notices = await get("/api/notifications", "buyer")
    assert isinstance(notices, dict)
    kinds = {n["kind"] for n in notices["items"]}
    assert {"order_ready", "order_refunded", "claim_decided"} <= kinds, kinds
    # Order lists: staff within their tenancy, everyone else her own orders only.
    a_orders = {w.order_paid, w.order_refunded, w.order_picked}
    for role in USERS:
        listed = await get(f"/api/orders?session_id={w.session_a}", role)
        assert isinstance(listed, dict)
        ids = {item["id"] for item in listed["items"]}
        # (the matrix's own pay probe may have added one more of the buyer's orders)
        assert (a_orders <= ids if role in BUYER_OR_STAFF else ids == set()), (role, ids)
