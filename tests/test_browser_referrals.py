"""A neighbour's share link, on phones (390×844, zh-CN, Asia/Shanghai), from the host's rate to
the payout: the host sets a 10% referral rate on his session in the back office; 王阿姨 shares
the live room (her link carries her code); 李阿姨 opens it with no account, signs up through
her community's invite and pays: 王阿姨's commission is pending; the host confirms the pickup
on the pickup page: due; 赵叔 comes through the same link, pays, and is refunded: that
commission is reversed; the host pays out what is due through the payment provider. A
screenshot of every step is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import Kit, browser_kit

SUNNY = "阳光花园"
LAPTOP = {"width": 1280, "height": 800}


async def sign_up_and_pay(kit: Kit, page: Any, invite: str, name: str, username: str) -> None:
    await page.goto(f"/join/{invite}")
    await page.locator("#invite-community", has_text=SUNNY).wait_for(timeout=20_000)
    await page.fill("#su-display", name)
    await page.fill("#su-username", username)
    await page.fill("#su-password", "枇杷熟了-sunny-garden")
    await page.click("#signup-submit")
    await page.locator("#flash", has_text=f"已加入{SUNNY}").wait_for(timeout=20_000)


async def buy_in_room(page: Any, sid: int) -> None:
    await page.goto(f"/live/{sid}")
    await page.locator("#open-buy:not([hidden])").wait_for(timeout=20_000)
    await page.locator("#open-buy").click()
    sheet = page.locator("#buy-sheet")
    await sheet.locator("#buy").click()
    await sheet.locator("#pay").wait_for(timeout=20_000)
    await sheet.locator("#pay").click()
    await sheet.locator("#confirmation").wait_for(timeout=20_000)


async def only_order(kit: Kit, page: Any) -> dict[str, Any]:
    token = await page.evaluate("localStorage.getItem('linli.token')")
    (order,) = (await kit.rest.call("GET", "/api/orders", token))["items"]
    return dict(order)


async def totals_shown(page: Any) -> dict[str, str]:
    await page.reload()
    await page.locator("#ref-totals .tile").first.wait_for(timeout=20_000)
    tiles = page.locator("#ref-totals .tile")
    return {str(await tiles.nth(i).get_attribute("data-status")):
            str(await tiles.nth(i).locator(".value").text_content())
            for i in range(await tiles.count())}


async def test_share_link_to_commission_due_reversed_and_paid(tmp_path: Path, redis_url: str,
                                                              redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "referral_link_to_payout") as kit:
        rest = kit.rest
        host = await rest.account("laozhang", "host", "老张")
        sharer = await rest.account("wang_ayi", "viewer", "王阿姨")
        sunny = await rest.call("POST", "/api/communities", host.token, json={"name": SUNNY})
        await rest.call("POST", f"/api/communities/{sunny['id']}/pickup-points", host.token,
                        json={"name": "南门驿站", "address": "阳光花园南门"})
        session = await rest.call("POST", "/api/sessions", host.token, json={"title": "老张的枇杷园"})
        sid = int(session["id"])
        product = await rest.call("POST", "/api/products", host.token,
                                  json={"name": "白玉枇杷 2斤装", "price_fen": 6800})
        await rest.call("POST", f"/api/sessions/{sid}/sales", host.token, json={
            "product_id": product["id"], "stock": 50, "price_fen": 6800, "per_buyer_limit": 3})
        await rest.call("POST", f"/api/sessions/{sid}/pin", host.token,
                        json={"product_id": product["id"]})
        invite = (await rest.call("POST", f"/api/communities/{sunny['id']}/invites", host.token,
                                  json={"max_uses": 100}))["code"]

        # 1. The host sets a 10% referral rate on his session in the back office.
        office = await kit.page(host, "/commissions", label="laozhang", viewport=LAPTOP)
        await office.locator(f"#rate-target option[value='session:{sid}']").wait_for(state="attached",
                                                                                   timeout=20_000)
        await office.select_option("#rate-target", f"session:{sid}")
        await office.select_option("#rate-kind", "referral")
        await office.fill("#rate-pct", "10")
        await office.click("#rate-save")
        await office.locator("#rates .badge", has_text="10.0%").wait_for(timeout=20_000)
        await kit.shot(office, "host_sets_rate")

        # 2. 王阿姨 shares the live room: the link in the share sheet carries her code.
        wang = await kit.page(sharer, f"/live/{sid}", label="wang")
        await wang.locator("#share").click()
        await wang.wait_for_function(
            "() => document.querySelector('#share-url').value.includes('?ref=')", timeout=20_000)
        link = await wang.locator("#share-url").input_value()
        code = link.split("?ref=")[1]
        await kit.shot(wang, "share_sheet_with_ref")
        await wang.goto(f"/preview/{sid}")
        await wang.locator("#share-box:not([hidden])").wait_for(timeout=20_000)
        assert (await wang.locator("#share-url").input_value()).endswith(f"/preview/{sid}?ref={code}")
        await kit.shot(wang, "preview_share_with_ref")
        await wang.goto("/referrals")
        await wang.wait_for_function("() => document.querySelector('#ref-link').value !== ''",
                                     timeout=20_000)
        assert (await wang.locator("#ref-link").input_value()).endswith(f"?ref={code}")
        assert await wang.locator("#ref-buyers-empty").is_visible()
        await kit.shot(wang, "my_referrals_empty")

        # 3. 李阿姨 opens the shared link with no account, signs up from her invite and pays.
        li = await kit.page(path=link.replace(kit.base, ""), label="li")
        await li.locator("#share").wait_for(timeout=20_000)
        assert await li.evaluate("localStorage.getItem('linli.ref')") == code
        await sign_up_and_pay(kit, li, invite, "李阿姨", "li_ayi")
        await buy_in_room(li, sid)
        await kit.shot(li, "referred_buyer_paid")
        li_order = await only_order(kit, li)

        # 4. 王阿姨's page: 李** bought, ¥6.80 pending.
        totals = await totals_shown(wang)
        assert totals["pending"] == "¥6.80" and totals["due"] == "¥0.00", totals
        buyer = wang.locator("#ref-buyers .ref-item").first
        assert await buyer.locator(".ref-name").text_content() == "李**"
        assert await buyer.locator(".badge").text_content() == "已下单"
        await kit.shot(wang, "commission_pending")

        # 5. Pickup day: the shop marks it ready, 李阿姨 reads her code out, the host types it on
        # the pickup page: the commission is due.
        detail = await rest.call("GET", f"/api/orders/{li_order['id']}",
                                 await li.evaluate("localStorage.getItem('linli.token')"))
        await rest.call("POST", f"/api/orders/{li_order['id']}/ready", host.token)
        counter = await kit.page(host, "/pickup", label="laozhang-pickup")
        await counter.wait_for_selector("body[data-ready='1']", timeout=20_000)
        await counter.select_option("#f-session", str(sid))
        await counter.locator("#orders tbody tr[data-status=ready_for_pickup]").first.wait_for(
            timeout=20_000)
        await counter.fill("#code", detail["pickup_code"])
        await counter.click("#confirm-form button[type=submit]")
        await counter.wait_for_function(
            f"() => document.querySelector('#confirm-result').textContent.includes('#{li_order['id']}')",
            timeout=20_000)
        assert "已确认取货" in (await counter.text_content("#confirm-result") or "")
        await kit.shot(counter, "staff_confirms_pickup")
        totals = await totals_shown(wang)
        assert totals["due"] == "¥6.80" and totals["pending"] == "¥0.00", totals
        await kit.shot(wang, "commission_due")

        # 6. 赵叔 comes through the same link, pays, and the shop refunds him: reversed.
        zhao = await kit.page(path=f"/?ref={code}", label="zhao")
        await zhao.locator("#top .brand").wait_for(timeout=20_000)
        await sign_up_and_pay(kit, zhao, invite, "赵叔", "zhao_shu")
        await buy_in_room(zhao, sid)
        zhao_order = await only_order(kit, zhao)
        await rest.call("POST", f"/api/orders/{zhao_order['id']}/refund", host.token, json={})
        totals = await totals_shown(wang)
        assert (totals["due"], totals["reversed"], totals["pending"]) == ("¥6.80", "¥6.80", "¥0.00")
        reversed_row = wang.locator("#ref-rows .ref-item[data-status='reversed']")
        assert await reversed_row.count() == 1
        await kit.shot(wang, "commission_reversed")
        assert await kit.axe(wang, "referrals") == []

        # 7. The host pays out what is due, through the payment provider.
        await office.reload()
        row = office.locator(f"#report tr[data-beneficiary='{sharer.id}']")
        await row.locator("td.due", has_text="¥6.80").wait_for(timeout=20_000)
        await kit.shot(office, "payout_report")
        await row.locator("button.pay").click()
        await office.locator("#report-status", has_text="已结算 ¥6.80").wait_for(timeout=20_000)
        await kit.shot(office, "paid_out")
        assert await kit.axe(office, "commissions") == []
        totals = await totals_shown(wang)
        assert (totals["paid"], totals["due"]) == ("¥6.80", "¥0.00"), totals
        await kit.shot(wang, "commission_paid")
        assert kit.errors == [], kit.errors
