"""Every page a neighbour opens speaks one language at a time: in Chinese no English word of the
interface shows in the page's main part, and in English no Chinese does, apart from what people
wrote (titles, names, addresses: the content the test made, listed below)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.browser_support import browser_kit

# Content the test itself writes: it stays as written in either language.
CONTENT = ("阳光花园", "南门驿站", "阳光花园南门", "老张的枇杷园", "白玉枇杷 2斤装", "老张合作农场",
           "东坡3号地", "李阿姨", "老张", "镇农检站", "PP-2026-07-A", "明晚八点开播")
LATIN_WORD = re.compile(r"\b[A-Za-z]{3,}\b")
CJK = re.compile(r"[\u3400-\u9fff]")
# Not interface words: units and marks a Chinese page writes in Latin letters too.
ALLOWED_LATIN = {"QR", "PDF", "CSV", "HLS", "Linli"}


async def _main_text(page: Any) -> str:
    await page.wait_for_load_state("networkidle")
    return str(await page.locator("main").inner_text())


async def test_neighbour_pages_show_one_language(tmp_path: Path, redis_url: str,
                                                 redis_client: Redis) -> None:
    async with browser_kit(tmp_path, redis_url, "one_language") as kit:
        rest = kit.rest
        host = await rest.account("laozhang", "host", "老张")
        liayi = await rest.account("liayi", "viewer", "李阿姨")
        sunny = await rest.call("POST", "/api/communities", host.token, json={"name": "阳光花园"})
        await rest.call("POST", f"/api/communities/{sunny['id']}/members", rest.admin_token,
                        json={"user_id": liayi.id})
        await rest.call("POST", f"/api/communities/{sunny['id']}/pickup-points", host.token,
                        json={"name": "南门驿站", "address": "阳光花园南门"})
        live = await rest.call("POST", "/api/sessions", host.token, json={"title": "老张的枇杷园"})
        later = await rest.call("POST", "/api/sessions", host.token, json={
            "title": "老张的枇杷园", "scheduled_at": "2030-06-01T20:00:00+08:00"})
        await rest.call("PUT", f"/api/sessions/{later['id']}/preview", host.token,
                        json={"preview_text": "明晚八点开播"})
        await rest.call("POST", "/api/batches", host.token, json={
            "code": "PP-2026-07-A", "farm": "老张合作农场", "plot": "东坡3号地"})
        await rest.call("POST", "/api/batches/PP-2026-07-A/qc-reports", host.token, json={
            "tester": "镇农检站", "tested_at": "2026-07-01T02:00:00Z", "conclusion": "pass",
            "measurements": [{"kind": "pesticide_quick_test", "value": 12.5},
                             {"kind": "brix", "value": 13.5}]})
        product = await rest.call("POST", "/api/products", host.token,
                                  json={"name": "白玉枇杷 2斤装", "price_fen": 6800})
        await rest.call("POST", f"/api/sessions/{live['id']}/sales", host.token, json={
            "product_id": product["id"], "stock": 50, "price_fen": 6800, "per_buyer_limit": 3,
            "community_ids": [sunny["id"]], "community_price_fen": 5800})
        await rest.call("POST", f"/api/sessions/{live['id']}/pin", host.token,
                        json={"product_id": product["id"]})
        invite = await rest.call("POST", f"/api/communities/{sunny['id']}/invites", host.token,
                                 json={"max_uses": 10})
        pages = {
            "home": "/", "live": f"/live/{live['id']}", "orders": "/orders",
            "preview": f"/preview/{later['id']}", "me": "/me", "trace": "/trace/PP-2026-07-A",
            "replays": "/replays", "join": f"/join/{invite['code']}", "referrals": "/referrals",
        }
        found: dict[str, list[str]] = {}
        for lang in ("zh", "en"):
            page = await kit.page(liayi, label=f"liayi-{lang}")
            await page.goto("/")
            await page.evaluate(f"localStorage.setItem('linli.lang', '{lang}')")
            for name, path in pages.items():
                await page.goto(path)
                text = await _main_text(page)
                if lang == "zh":
                    bad = [w for w in LATIN_WORD.findall(text) if w not in ALLOWED_LATIN]
                else:
                    for own in sorted(CONTENT, key=len, reverse=True):
                        text = text.replace(own, "")
                    bad = CJK.findall(text)
                if bad:
                    found[f"{lang} {name}"] = bad[:10]
                await kit.shot(page, f"{lang}_{name}")
        assert found == {}, found
        assert kit.errors == [], kit.errors
