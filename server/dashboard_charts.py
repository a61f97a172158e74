"""Server-rendered SVG bar charts for the dashboard: a page shows them with a plain <img>.

No script, no external fonts: the SVG is static markup, so the page's CSP (img-src 'self')
allows it and it prints well. Every label is XML-escaped (farm and community names are user text).
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

WIDTH = 640
BAR_HEIGHT = 26
GAP = 10
LEFT = 190
RIGHT = 70
TOP = 44
MAX_BARS = 40

TITLES = {
    "live_interaction_rate": "直播互动率 / Live interaction rate",
    "conversion_rate": "观看→购买转化率 / Conversion (viewers → buyers)",
    "group_buy_success_rate": "拼团成功率 / Group-buy success rate",
    "repeat_purchase_rate": "复购率 / Repeat-purchase rate",
    "on_time_pickup_rate": "按时取货率 / On-time pickup rate",
    "claim_rate": "售后申请率 / Claim rate",
    "refund_rate": "退款率 / Refund rate",
    "nps": "NPS 净推荐值",
    "trace_lookup_rate": "溯源查看率 / Trace look-up rate",
}


def bar_chart(metric: str, rows: list[dict[str, Any]], scope: str) -> str:
    """Horizontal bars, one per group; rates as %, NPS on −100..100 with a zero line."""
    rows = rows[:MAX_BARS]
    is_nps = metric == "nps"
    height = TOP + max(len(rows), 1) * (BAR_HEIGHT + GAP) + 20
    span = WIDTH - LEFT - RIGHT
    title = f"{TITLES.get(metric, metric)} · {scope}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
        'font-family="sans-serif" font-size="13">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="12" y="24" font-size="15" font-weight="bold" fill="#222">{escape(title)}</text>',
    ]
    zero_x = LEFT + (span / 2 if is_nps else 0)
    if not rows:
        parts.append(f'<text x="{LEFT}" y="{TOP + 18}" fill="#888">暂无数据 / No data</text>')
    for index, row in enumerate(rows):
        y = TOP + index * (BAR_HEIGHT + GAP)
        label = str(row.get("label") or row.get("key") or "")
        if len(label) > 14:
            label = label[:13] + "…"
        value = row.get(metric)
        parts.append(f'<text x="{LEFT - 8}" y="{y + 18}" text-anchor="end" fill="#333">'
                     f"{escape(label)}</text>")
        parts.append(f'<rect x="{LEFT}" y="{y}" width="{span}" height="{BAR_HEIGHT}" fill="#f1f3f5"/>')
        if value is None:
            parts.append(f'<text x="{LEFT + 6}" y="{y + 18}" fill="#999">—</text>')
            continue
        if is_nps:
            width = abs(float(value)) / 100 * (span / 2)
            x = zero_x if value >= 0 else zero_x - width
            color = "#2f9e44" if value >= 0 else "#e03131"
            text = f"{float(value):.0f}"
        else:
            width = max(0.0, min(1.0, float(value))) * span
            x = LEFT
            color = "#1971c2"
            text = f"{float(value) * 100:.1f}%"
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" '
                     f'fill="{color}"><title>{escape(label)}: {escape(text)}</title></rect>')
        parts.append(f'<text x="{LEFT + span + 6}" y="{y + 18}" fill="#222">{escape(text)}</text>')
    if is_nps:
        parts.append(f'<line x1="{zero_x}" y1="{TOP - 4}" x2="{zero_x}" y2="{height - 16}" '
                     'stroke="#555" stroke-dasharray="3,3"/>')
    parts.append("</svg>")
    return "".join(parts)
