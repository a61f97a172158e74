"""Every page a neighbour opens fits a phone and older eyes (390×844, zh-CN, Asia/Shanghai),
measured in Chromium on real data (a live sale being explained, paid orders, a QC report, a
notification), the sheets and forms opened as she opens them:

- text: every visible text node's computed font size is at least 16 px; a badge (讲解中,
  小区价, a count on the bell) may be 14 px, nothing smaller;
- targets: every visible link, button, field and survey choice is at least 44×44 CSS px (WCAG
  2.5.5's size, no spacing allowance); the one exception is WCAG's "inline" one: a link inside a
  sentence is sized by the sentence's text;
- no sideways scrolling: the page is no wider than the screen.

Offenders are listed by element in the assertion message; a screenshot of each page is kept.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import Account, Kit, browser_kit

MIN_TEXT_PX = 16
MIN_BADGE_PX = 14
MIN_TARGET_PX = 44
# Short labels drawn as a tag, not read as text: they may be one step smaller.
BADGES = ".badge, .basis, .mine-badge, .pending-badge, .bell-count"

MEASURE = """([rootSelector, minText, minBadge, minTarget, badges]) => {
  const root = document.querySelector(rootSelector) || document.body;
  const shown = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden' || parseFloat(s.opacity) === 0) return false;
      if (e.matches('.sr-only')) return false;
    }
    const r = el.getBoundingClientRect();
    return r.width > 1 && r.height > 1;
  };
  const name = (el) => {
    const id = el.id ? '#' + el.id : '';
    const cls = typeof el.className === 'string' && el.className.trim()
      ? '.' + el.className.trim().split(/\\s+/).join('.') : '';
    const text = (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().slice(0, 24);
    return `${el.tagName.toLowerCase()}${id}${cls} "${text}"`;
  };
  const small = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || !node.textContent.trim()) continue;
    if (['SCRIPT', 'STYLE', 'OPTION', 'TITLE'].includes(el.tagName)) continue;
    if (!shown(el)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const rect = range.getBoundingClientRect();
    if (rect.width < 1 || rect.height < 1) continue;
    const px = parseFloat(getComputedStyle(el).fontSize);
    const floor = el.closest(badges) ? minBadge : minText;
    if (px + 0.01 < floor) small.push(`${name(el)} ${px}px`);
  }
  const interactive = 'a[href], button, input:not([type=hidden]), select, textarea, summary, ' +
    '[role=button], label:has(> input[type=radio]), label:has(> input[type=checkbox])';
  const targets = [];
  for (const el of root.querySelectorAll(interactive)) {
    // A radio or checkbox drawn invisible inside its label: the label is what a finger hits.
    if (el.matches('input[type=radio], input[type=checkbox]') && el.closest('label')) continue;
    if (!shown(el)) continue;
    const r = el.getBoundingClientRect();
    // A link inside a sentence is part of the text (WCAG 2.5.8 "inline" exception).
    const parent = el.parentElement;
    const inline = el.tagName === 'A' && getComputedStyle(el).display === 'inline' && parent &&
      [...parent.childNodes].some((n) => n !== el && n.nodeType === 3 && n.textContent.trim());
    targets.push({ el, r, inline });
  }
  const tight = targets
    .filter((t) => !t.inline && (t.r.width + 0.5 < minTarget || t.r.height + 0.5 < minTarget))
    .map((t) => `${name(t.el)} ${Math.round(t.r.width)}x${Math.round(t.r.height)}`);
  const width = document.scrollingElement.scrollWidth;
  return { small, tight, width, screen: innerWidth };
}"""


async def _measure(kit: Kit, page: Any, name: str, root: str = "body") -> list[str]:
    """What on the page is too small, too tight or too wide (empty: it fits)."""
    await page.wait_for_load_state("networkidle")
    await kit.shot(page, name)
    got = await page.evaluate(MEASURE, [root, MIN_TEXT_PX, MIN_BADGE_PX, MIN_TARGET_PX, BADGES])
    problems = [f"{name}: text {item}" for item in got["small"]]
    problems += [f"{name}: target {item}" for item in got["tight"]]
    if got["width"] > got["screen"]:
        problems.append(f"{name}: {got['width']}px wide on a {got['screen']}px screen")
    return problems


async def _world(kit: Kit) -> dict[str, Any]:
    rest = kit.rest
    host = await rest.account("laozhang", "host", "老张")
    liayi = await rest.account("liayi", "viewer", "李阿姨")
    sunny = await rest.call("POST", "/api/communities", host.token, json={"name": "阳光花园"})
    await rest.call("POST", f"/api/communities/{sunny['id']}/members", rest.admin_token,
                    json={"user_id": liayi.id})
    await rest.call("POST", f"/api/communities/{sunny['id']}/pickup-points", host.token, json={
        "name": "3号楼门卫室", "address": "阳光花园3号楼东侧,快递柜旁边的门卫室",
        "hours": "每天 9:00–20:00"})
    batch = await rest.call("POST", "/api/batches", host.token, json={
        "code": "PP-2026-07-A", "farm": "老张合作农场", "plot": "东坡3号地"})
    await rest.call("POST", "/api/batches/PP-2026-07-A/qc-reports", host.token, json={
        "tester": "镇农检站", "tested_at": "2026-07-01T02:00:00Z", "conclusion": "pass",
        "measurements": [{"kind": "pesticide_quick_test", "value": 12.5},
                         {"kind": "brix", "value": 13.5}]})
    live = await rest.call("POST", "/api/sessions", host.token, json={"title": "老张的枇杷园"})
    sid = int(live["id"])
    product = await rest.call("POST", "/api/products", host.token, json={
        "name": "白玉枇杷 2斤装", "price_fen": 6800, "batch_id": batch["id"]})
    sale = await rest.call("POST", f"/api/sessions/{sid}/sales", host.token, json={
        "product_id": product["id"], "stock": 50, "price_fen": 6800, "per_buyer_limit": 5,
        "community_ids": [sunny["id"]], "community_price_fen": 5800,
        "gift_first_n": 30, "gift_text": "前30名送桑葚一盒"})
    await rest.call("POST", f"/api/sales/{sale['id']}/group-buys", host.token, json={
        "community_id": sunny["id"], "threshold": 40, "unit": "people", "group_price_fen": 5000,
        "deadline": (datetime.now(UTC) + timedelta(hours=2)).isoformat()})
    await rest.call("POST", f"/api/sessions/{sid}/pin", host.token,
                    json={"product_id": product["id"]})

    async def buy(qty: int) -> int:
        held = await rest.call("POST", f"/api/sales/{sale['id']}/holds", liayi.token,
                               json={"qty": qty, "community_id": sunny["id"]},
                               headers={"Idempotency-Key": uuid.uuid4().hex})
        return int((await rest.call("POST", f"/api/holds/{held['hold_id']}/pay",
                                    liayi.token))["order_id"])

    collected, waiting = await buy(1), await buy(2)
    await rest.call("POST", "/api/orders/ready", host.token,
                    json={"order_ids": [collected, waiting]})
    code = (await rest.call("GET", f"/api/orders/{collected}", liayi.token))["pickup_code"]
    await rest.call("POST", f"/api/orders/{collected}/picked-up", host.token,
                    json={"pickup_code": code})
    later = await rest.call("POST", "/api/sessions", host.token, json={
        "title": "老张的枇杷园 · 第二场", "scheduled_at": "2030-06-01T20:00:00+08:00"})
    await rest.call("PUT", f"/api/sessions/{later['id']}/preview", host.token,
                    json={"preview_text": "明晚八点开播,带大家看枇杷园"})
    invite = await rest.call("POST", f"/api/communities/{sunny['id']}/invites", host.token,
                             json={"max_uses": 10})
    return {"liayi": liayi, "sid": sid, "later": int(later["id"]), "invite": invite["code"],
            "collected": collected, "waiting": waiting}


async def test_every_neighbour_page_fits_a_phone(tmp_path: Path, redis_url: str,
                                                 redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "phone_fit") as kit:
        world = await _world(kit)
        liayi: Account = world["liayi"]
        page = await kit.page(liayi, "/")
        await page.locator("#top .who-name").wait_for()
        problems = await _measure(kit, page, "home")

        # The live room, its buy sheet and its trust sheet.
        await page.goto(f"/live/{world['sid']}")
        await page.locator("#pin-price", has_text="¥58.00").wait_for(timeout=20_000)
        await page.locator("#group-list .group.mine").wait_for()
        await page.wait_for_function("() => window.linliLive && window.linliLive.conn.socket.connected")
        await page.fill("#comment-input", "枇杷甜不甜?")
        await page.click("#comment-form button[type=submit]")
        await page.locator("#comment-list .comment").first.wait_for()
        await page.fill("#ask-input", "几号能取货?")
        await page.click("#ask-form button[type=submit]")
        await page.locator("#question-list .question.pending").wait_for()
        problems += await _measure(kit, page, "live_room")
        await page.click("#open-buy")
        sheet = page.locator("#buy-sheet")
        await sheet.locator("#pickup-select option").first.wait_for(state="attached")
        problems += await _measure(kit, page, "buy_sheet", "#buy-sheet")
        await sheet.locator("#buy").click()
        await sheet.locator("#pay").wait_for(timeout=20_000)
        problems += await _measure(kit, page, "buy_sheet_hold", "#buy-sheet")
        await sheet.locator("#pay").click()
        await sheet.locator("#confirmation").wait_for(timeout=20_000)
        problems += await _measure(kit, page, "buy_sheet_paid", "#buy-sheet")
        await sheet.locator("button[data-close]").first.click()
        await page.click("#open-trust")
        trust = page.locator("#trust-sheet")
        await trust.locator("h3", has_text="买家评价").wait_for(timeout=20_000)
        problems += await _measure(kit, page, "trust_sheet", "#trust-sheet")
        await trust.locator("button[data-close]").click()
        await page.click("#share")
        await page.locator("#share-sheet #share-url").wait_for()
        problems += await _measure(kit, page, "share_sheet", "#share-sheet")

        # My orders, an order's after-sales claim, and the survey.
        await page.goto("/orders")
        await page.wait_for_selector("body[data-ready='1']")
        await page.locator(".pickup-qr:not([hidden])").first.wait_for()
        problems += await _measure(kit, page, "orders")
        collected = page.locator(f"#orders .order[data-id='{world['collected']}']")
        await collected.locator("button.claim-open").click()
        await collected.locator("form.claim-form").wait_for()
        # Its reasons in the page's one language (they were written in both at once).
        assert await collected.locator("select.claim-reason option").all_text_contents() == [
            "坏果/变质", "破损", "少件", "发错货", "与描述不符", "其他"]
        problems += await _measure(kit, page, "order_claim")
        # Each field of the claim form has a visible name (axe: select-name, label).
        assert await kit.axe(page, "order_claim") == []
        assert await collected.get_by_label("问题类型").count() == 1
        await page.goto(f"/nps/{world['collected']}")
        await page.wait_for_selector("body[data-ready='1']")
        problems += await _measure(kit, page, "nps")

        # Trace, preview, joining (signed in), my page with its notifications, replays.
        await page.goto("/trace/PP-2026-07-A")
        await page.get_by_text("镇农检站").first.wait_for(timeout=20_000)
        problems += await _measure(kit, page, "trace")
        await page.goto(f"/preview/{world['later']}")
        await page.locator("time").first.wait_for(timeout=20_000)
        problems += await _measure(kit, page, "preview")
        await page.goto(f"/join/{world['invite']}")
        await page.locator("#invite-community", has_text="阳光花园").wait_for(timeout=20_000)
        problems += await _measure(kit, page, "join")
        await page.goto("/me")
        await page.locator("#notice-items li").first.wait_for(timeout=20_000)
        problems += await _measure(kit, page, "me")
        await page.locator("#top .bell").click()
        await page.locator(".notice-panel:not([hidden])").wait_for()
        problems += await _measure(kit, page, "notice_panel")
        await page.goto("/replays")
        problems += await _measure(kit, page, "replays")
        await page.goto(f"/replays/{world['sid']}")
        problems += await _measure(kit, page, "replay")

        # Signed out, the join page's forms (a neighbour with no account yet).
        stranger = await kit.page(path=f"/join/{world['invite']}", label="stranger")
        await stranger.locator("#invite-community", has_text="阳光花园").wait_for(timeout=20_000)
        problems += await _measure(kit, stranger, "join_signed_out")
        await stranger.goto(f"/live/{world['sid']}")
        await stranger.locator("#login-hint-link").wait_for(timeout=20_000)
        problems += await _measure(kit, stranger, "live_room_signed_out")

        # English runs longer: the same pages must still fit.
        await page.evaluate("localStorage.setItem('linli.lang', 'en')")
        for name, path, ready in (
                ("en_live_room", f"/live/{world['sid']}", "#pin-price"),
                ("en_orders", "/orders", "body[data-ready='1']"),
                ("en_trace", "/trace/PP-2026-07-A", ".qc-report"),
                ("en_preview", f"/preview/{world['later']}", "time")):
            await page.goto(path)
            await page.locator(ready).first.wait_for(timeout=20_000)
            problems += await _measure(kit, page, name)

        assert problems == [], "\n".join(problems)
        assert kit.errors == [], kit.errors
