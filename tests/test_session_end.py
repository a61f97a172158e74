"""Ending a live session stops its selling: its sales close (holds already made keep their
payment window), new holds are refused with `ended`, the room is told and drops the pin. A hold
or a sale racing the end is either refused or an ordinary one, never a sale left open."""

from __future__ import annotations

import asyncio

import pytest

from commerce import live_sessions
from commerce.events import DomainEvent
from server.commerce_keys import checkout_key
from server.keys import database_key, events_key
from tests.commerce_support import bulk_buyers, hold, make_shop, pay
from tests.conftest import Api
from tests.realtime_support import connect

N = 24


async def _end(api: Api, session_id: int, token: str) -> int:
    resp = await api.client.post(f"/api/sessions/{session_id}/end", headers=api.auth(token))
    return resp.status


async def test_ending_a_session_closes_its_sales_and_tells_the_room(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=10)
    later = await shop.sale(product_id=await shop.new_product("初榨橄榄油"), stock=5,
                            starts_at="2099-01-01T00:00:00+00:00")
    resp = await api.client.post(f"/api/sessions/{shop.session_id}/pin",
                                 json={"product_id": shop.product_id},
                                 headers=api.auth(shop.host_token))
    assert resp.status == 200, await resp.text()
    (_b1, early), (_b2, late) = await bulk_buyers(api, 2)
    status, kept = await hold(api, sale["id"], early, 2)
    assert status == 201
    anonymous = await connect(str(api.client.make_url("/")), "/live",
                              {"session_id": shop.session_id})
    try:
        await anonymous.wait(lambda: [s for s in anonymous.of("state") if s["pinned"]])
        assert await _end(api, shop.session_id, shop.host_token) == 200
        # every sale of the session is closed, the scheduled one too
        for sale_id in (sale["id"], later["id"]):
            body = await (await api.client.get(f"/api/sales/{sale_id}")).json()
            assert body["status"] == "closed", body
        status, body = await hold(api, sale["id"], late, 1)
        assert (status, body["error"]["code"]) == (409, "ended")
        status, body = await hold(api, later["id"], late, 1)
        assert (status, body["error"]["code"]) == (409, "ended")
        # the hold made before keeps its payment window
        status, paid = await pay(api, kept["hold_id"], early)
        assert status == 200, paid
        # the room: session_ended, the sales closed, no pin, and the state says so to late joiners
        await anonymous.wait(lambda: anonymous.of("session_ended"))
        closed = await anonymous.wait(lambda: anonymous.of("sale_closed"))
        assert {c["sale"]["sale_id"] for c in closed} == {sale["id"], later["id"]}
        last = await anonymous.wait(lambda: [s for s in anonymous.of("state")
                                             if s["status"] == "ended" and s["pinned"] is None
                                             and all(x["status"] == "closed" for x in s["sales"])
                                             and any(x.get("sold") == 2 for x in s["sales"])])
        assert len(last[-1]["sales"]) == 2
        joiner = await connect(str(api.client.make_url("/")), "/live",
                               {"session_id": shop.session_id})
        state = (await joiner.wait(lambda: joiner.of("state")))[-1]
        assert state["status"] == "ended" and state["pinned"] is None
        await joiner.close()
        # nothing can be pinned or put on sale any more
        resp = await api.client.post(f"/api/sessions/{shop.session_id}/pin",
                                     json={"product_id": shop.product_id},
                                     headers=api.auth(shop.host_token))
        assert resp.status == 409, await resp.text()
        await shop.sale(expect=409)
        # ending again is harmless
        assert await _end(api, shop.session_id, shop.host_token) == 200
    finally:
        await anonymous.close()


@pytest.mark.races
async def test_holds_racing_the_end_are_refused_or_ordinary(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    sale = await shop.sale(stock=N * 2, per_buyer_limit=2)
    buyers = await bulk_buyers(api, N)
    answers = await asyncio.gather(
        *(hold(api, sale["id"], token, 1) for _uid, token in buyers[: N // 2]),
        _end(api, shop.session_id, shop.host_token),
        *(hold(api, sale["id"], token, 1) for _uid, token in buyers[N // 2:]),
    )
    ended = answers[N // 2]
    holds = [a for i, a in enumerate(answers) if i != N // 2]
    assert ended == 200
    made = []
    for (status, body), (_uid, token) in zip(holds, buyers, strict=True):
        if status == 201:
            made.append((body["hold_id"], token))
        else:
            assert (status, body["error"]["code"]) == (409, "ended"), body
    # every hold that was made is an ordinary one: it can be paid after the end
    paid = await asyncio.gather(*(pay(api, hold_id, token) for hold_id, token in made))
    assert [status for status, _body in paid] == [200] * len(made)
    # and nothing is sold after the end
    late = await bulk_buyers(api, 1)
    status, body = await hold(api, sale["id"], late[0][1], 1)
    assert (status, body["error"]["code"]) == (409, "ended")
    counts = await api.app[checkout_key].store.counts(sale["id"])
    assert counts is not None and counts.status == "closed"
    assert (counts.sold, counts.held, counts.remaining) == (len(made), 0, N * 2 - len(made))


@pytest.mark.races
async def test_sales_made_racing_the_end_never_stay_open(any_db_api: Api) -> None:
    api = any_db_api
    shop = await make_shop(api)
    body = {"product_id": shop.product_id, "stock": 5, "price_fen": 1000, "per_buyer_limit": 1}

    async def make_sale() -> int:
        resp = await api.client.post(f"/api/sessions/{shop.session_id}/sales", json=body,
                                     headers=api.auth(shop.host_token))
        return resp.status

    answers = await asyncio.gather(*(make_sale() for _ in range(N // 2)),
                                   _end(api, shop.session_id, shop.host_token),
                                   *(make_sale() for _ in range(N // 2)))
    assert answers[N // 2] == 200
    assert set(answers) <= {200, 201, 409}, answers
    sales = await (await api.client.get(f"/api/sessions/{shop.session_id}/sales")).json()
    assert len(sales) == answers.count(201)
    assert all(s["status"] == "closed" for s in sales), [s["status"] for s in sales]
    (_uid, token), = await bulk_buyers(api, 1)
    for made in sales:
        status, refused = await hold(api, made["id"], token, 1)
        assert (status, refused["error"]["code"]) == (409, "ended")


async def test_a_session_ended_by_media_closes_its_sales(api: Api) -> None:
    """The publisher left and did not come back: media ends the session and announces it."""
    shop = await make_shop(api)
    sale = await shop.sale(stock=3)
    async with api.app[database_key].session() as db:
        session = await live_sessions.end_session(db, shop.session_id, None)
    await api.app[events_key].publish(
        DomainEvent("session_ended", shop.session_id, {"ended_at": session.ended_at}))
    body = await (await api.client.get(f"/api/sales/{sale['id']}")).json()
    assert body["status"] == "closed"
    (_uid, token), = await bulk_buyers(api, 1)
    status, refused = await hold(api, sale["id"], token, 1)
    assert (status, refused["error"]["code"]) == (409, "ended")
