"""Communities in real Chromium: 老张 approves 小美's join request on his laptop (she then pays
the community price), on his phone tags her 烘焙爱好者, appoints 老李 团长 and sends the bakers a
notice; 老李 opens pickup day on his phone and sees his community's orders only, and marks them
ready; 小美's bell shows the notice. Screenshots and axe checks at each page."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import USER_PASSWORD, Account, Kit, browser_kit

LAPTOP = {"width": 1280, "height": 800}
NOTICE = "明早 9 点烘焙原料到货,请带购物袋 <b>别忘了</b>"


async def _buy(kit: Kit, sale_id: int, buyer: Account, community_id: int) -> int:
    held = await kit.rest.call("POST", f"/api/sales/{sale_id}/holds", buyer.token,
                               json={"qty": 1, "community_id": community_id},
                               headers={"Idempotency-Key": uuid.uuid4().hex})
    paid = await kit.rest.call("POST", f"/api/holds/{held['hold_id']}/pay", buyer.token)
    return int(paid["order_id"])


async def _seed(kit: Kit) -> dict[str, Any]:
    rest = kit.rest
    host = await rest.account("laozhang", "host", "老张")
    other_host = await rest.account("laowang", "host", "老王")
    xiaomei = await rest.account("xiaomei", "viewer", "小美")
    laoli = await rest.account("laoli", "viewer", "老李")
    far = await rest.account("cuihu1", "viewer", "翠湖邻居")
    sunny = await rest.call("POST", "/api/communities", host.token,
                            json={"name": "阳光花园", "join_policy": "approval"})
    lake = await rest.call("POST", "/api/communities", other_host.token, json={"name": "翠湖小区"})
    await rest.call("POST", f"/api/communities/{sunny['id']}/members", host.token,
                    json={"user_id": laoli.id})
    await rest.call("POST", f"/api/communities/{lake['id']}/members", other_host.token,
                    json={"user_id": far.id})
    for community, owner, name in ((sunny, host, "3号楼门卫室"), (lake, other_host, "翠湖驿站")):
        await rest.call("POST", f"/api/communities/{community['id']}/pickup-points", owner.token,
                        json={"name": name, "address": f"{community['name']}", "hours": "每天 9:00–20:00"})
    session = await rest.call("POST", "/api/sessions", host.token, json={"title": "枇杷专场"})
    product = await rest.call("POST", "/api/products", host.token,
                              json={"name": "白沙枇杷", "price_fen": 3990})
    sale = await rest.call("POST", f"/api/sessions/{session['id']}/sales", host.token, json={
        "product_id": product["id"], "stock": 100, "price_fen": 3990, "per_buyer_limit": 5,
        "community_ids": [sunny["id"], lake["id"]], "community_price_fen": 2990})
    await rest.call("POST", f"/api/communities/{sunny['id']}/join", xiaomei.token, expect=202)
    lake_order = await _buy(kit, sale["id"], far, lake["id"])
    laoli_order = await _buy(kit, sale["id"], laoli, sunny["id"])
    return {"host": host, "xiaomei": xiaomei, "laoli": laoli, "sunny": sunny, "lake": lake,
            "sale": sale, "lake_order": lake_order, "laoli_order": laoli_order}


async def _no_overflow(page: Any, width: int) -> None:
    scroll = await page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll <= width, f"page is {scroll}px wide on a {width}px screen"


async def test_host_runs_his_community_and_its_leader_runs_pickup(
        tmp_path: Path, redis_url: str, redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "communities") as kit:
        world = await _seed(kit)
        host, xiaomei, laoli = world["host"], world["xiaomei"], world["laoli"]
        sunny_id, sale_id = world["sunny"]["id"], world["sale"]["id"]

        # Before approval 小美 pays the list price.
        before = await kit.rest.call("GET", f"/api/sales/{sale_id}", xiaomei.token)
        assert before["your_price_fen"] == 3990 and before["your_community_id"] is None

        # 老张 on his laptop: the request waits; he approves it.
        laptop = await kit.page(host, "/communities", viewport=LAPTOP)
        await laptop.wait_for_selector("body[data-ready='1']")
        assert await laptop.locator("#cm-role").text_content() == "管理者"
        request = laptop.locator(f"#cm-request-list li[data-user-id='{xiaomei.id}']")
        await request.wait_for()
        await kit.shot(laptop, "laptop_join_request")
        assert await kit.axe(laptop, "communities_laptop") == []
        await request.get_by_role("button", name="通过 小美").click()
        await laptop.wait_for_selector(f"#cm-member-list li[data-user-id='{xiaomei.id}']")
        assert await laptop.locator("#cm-request-list li").count() == 0
        await _no_overflow(laptop, LAPTOP["width"])
        await kit.shot(laptop, "laptop_member_approved")

        # Now she is a member: the community price, and she buys at it.
        after = await kit.rest.call("GET", f"/api/sales/{sale_id}", xiaomei.token)
        assert (after["your_price_fen"], after["your_community_id"]) == (2990, sunny_id), after
        held = await kit.rest.call("POST", f"/api/sales/{sale_id}/holds", xiaomei.token,
                                   json={"qty": 1, "community_id": sunny_id},
                                   headers={"Idempotency-Key": uuid.uuid4().hex})
        assert held["unit_price_fen"] == 2990, held
        paid = await kit.rest.call("POST", f"/api/holds/{held['hold_id']}/pay", xiaomei.token)
        xiaomei_order = int(paid["order_id"])

        # 老张 on his phone: tags 小美 a baker, appoints 老李 团长, tells the bakers.
        phone = await kit.page(host, "/communities")
        await phone.wait_for_selector("body[data-ready='1']")
        member = phone.locator(f"#cm-member-list li[data-user-id='{xiaomei.id}']")
        await member.locator("summary").click()
        await member.get_by_label("烘焙爱好者").check()
        await member.get_by_role("button", name="保存标签").click()
        await phone.wait_for_function(
            f"() => document.querySelector(\"#cm-member-list li[data-user-id='{xiaomei.id}'] .cm-tags\")"
            "?.textContent.includes('烘焙爱好者')")
        await phone.locator(f"#cm-member-list li[data-user-id='{laoli.id}']").get_by_role(
            "button", name="设为团长 老李").click()
        await phone.wait_for_selector(f"#cm-leader-list li[data-user-id='{laoli.id}']")
        await phone.fill("#cm-notice-text", NOTICE)
        await phone.select_option("#cm-notice-tag", "baking")
        await phone.click("#cm-notice-send")
        await phone.wait_for_function(
            "() => document.querySelector('#cm-notice-result').textContent.includes('已发送给 1 位成员')")
        await phone.wait_for_selector("#cm-notice-list li")

        # A second pickup point, made the default, its hours corrected.
        await phone.locator("#cm-point-add-box summary").click()
        await phone.fill("#cm-point-add input[name=name]", "2号楼快递柜")
        await phone.fill("#cm-point-add input[name=hours]", "每天 8:00–22:00")
        await phone.locator("#cm-point-add button[type=submit]").click()
        await phone.get_by_role("button", name="设为默认 2号楼快递柜").click()
        await phone.wait_for_function("() => [...document.querySelectorAll('#cm-point-list li')]"
                                      ".some((li) => li.textContent.includes('2号楼快递柜默认'))")
        locker = phone.locator("#cm-point-list li", has_text="2号楼快递柜")
        await locker.locator("summary").click()
        await locker.locator("input[name=hours]").fill("每天 7:00–23:00")
        await locker.get_by_role("button", name="保存").click()
        await phone.wait_for_function("() => [...document.querySelectorAll('#cm-point-list li')]"
                                      ".some((li) => li.textContent.includes('7:00–23:00'))")
        points = await kit.rest.call("GET", f"/api/communities/{sunny_id}/pickup-points")
        assert [(p["name"], p["hours"], p["default"]) for p in points] == [
            ("2号楼快递柜", "每天 7:00–23:00", True), ("3号楼门卫室", "每天 9:00–20:00", False)]
        await _no_overflow(phone, 390)
        await kit.shot(phone, "phone_tagged_leader_notice")
        assert await kit.axe(phone, "communities_phone") == []
        # A second tap on the same notice: the key is new only after a new text, so one notice.
        notices = await kit.rest.call("GET", f"/api/communities/{sunny_id}/notices", host.token)
        assert [(n["text"], n["tag"], n["recipients"]) for n in notices["items"]] == [
            (NOTICE, "baking", 1)]

        # 老李 signs in again (he is 团长 now) and runs pickup day on his phone.
        login = await kit.rest.login("laoli", USER_PASSWORD)
        assert login["user"]["leads"] == [sunny_id]
        leader = Account(laoli.id, laoli.username, login["token"], "viewer", "老李", login["user"])
        pickup = await kit.page(leader, "/pickup")
        await pickup.wait_for_selector("body[data-ready='1']")
        assert await pickup.locator("#f-community option").all_text_contents() == ["阳光花园"]
        ours = {xiaomei_order, world["laoli_order"]}
        await pickup.wait_for_function(
            f"() => document.querySelectorAll('#orders tbody tr').length === {len(ours)}")
        shown = {int(x) for x in await pickup.locator("#orders tbody tr").evaluate_all(
            "rows => rows.map((r) => r.dataset.id)")}
        assert shown == ours and world["lake_order"] not in shown
        await pickup.check("#select-all")
        await pickup.click("#mark-ready")
        await pickup.wait_for_function("() => document.querySelectorAll("
                                       "'#orders tbody tr[data-status=ready_for_pickup]').length === 2")
        await _no_overflow(pickup, 390)
        await kit.shot(pickup, "leader_pickup_day")
        assert await kit.axe(pickup, "leader_pickup") == []
        # Community B's order is out of his reach.
        far = await kit.rest.call("POST", f"/api/orders/{world['lake_order']}/ready", leader.token,
                                  expect=403)
        assert far["error"]["code"] == "forbidden"
        leader_nav = await pickup.locator("#top nav a").evaluate_all(
            "links => links.map((a) => a.getAttribute('href'))")
        assert "/communities" in leader_nav and "/pickup" in leader_nav

        # 老李's own communities page: what a 团长 may do, without the owner's settings.
        mine = await kit.page(leader, "/communities")
        await mine.wait_for_selector("body[data-ready='1']")
        assert await mine.locator("#cm-role").text_content() == "团长"
        assert await mine.locator("#cm-settings").is_hidden()
        assert await mine.locator("#cm-point-add").is_hidden()
        await kit.shot(mine, "leader_communities")
        assert await kit.axe(mine, "communities_leader") == []
        # In English the page's own words are all English (names are the neighbours' own).
        await mine.click("#lang-switch")
        await mine.wait_for_selector("body[data-ready='1']")
        headings = await mine.locator("#cm-body h2:visible").all_text_contents()
        assert headings == ["Join requests", "Members", "Send a notice", "Pickup points"], headings
        assert await mine.locator("#cm-role").text_content() == "Community leader"
        options = await mine.locator("#cm-notice-tag option").all_text_contents()
        assert options[:2] == ["All members", "Members tagged “Baking”"], options
        await kit.shot(mine, "leader_communities_en")

        # 小美's bell: the notice (escaped, as written) and her order ready.
        bell_page = await kit.page(xiaomei, "/")
        await bell_page.wait_for_function(
            "() => !document.querySelector('#notice-count')?.hidden")
        await bell_page.click("#notice-bell")
        item = bell_page.locator("#notice-panel .notice-item", has_text="明早 9 点")
        await item.wait_for()
        assert await item.locator("a").text_content() == f"阳光花园:{NOTICE}"
        assert await bell_page.locator("#notice-panel b").count() == 0
        await kit.shot(bell_page, "member_bell_notice")
        assert await kit.axe(bell_page, "member_bell") == []
        assert kit.errors == []
