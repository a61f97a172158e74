"""Server-rendered SVG bar charts for the dashboard: a page shows them with a plain <img>.

No script, no external fonts: the SVG is static markup, so the page's CSP (img-src 'self')
allows it and it prints well. Every label is XML-escaped (farm and community names are user text).

Made to be read on a phone: the drawing is narrow (WIDTH user units, shown at about that many CSS
pixels on a phone and up to ~1.5× on a laptop), each bar's name stands on its own line(s) above
the bar, wrapped rather than cut, and the value sits at the bar's end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal
from xml.sax.saxutils import escape

Lang = Literal["zh", "en"]
WIDTH = 360
PAD = 12
BAR_HEIGHT = 18
LINE = 18
FONT = 14
TOP = 52
MAX_BARS = 40
MAX_LABEL_LINES = 3

TITLES: dict[str, tuple[str, str]] = {
    "gmv_fen": ("成交额 GMV", "GMV"),
    "average_order_value_fen": ("客单价", "Average order value"),
    "live_interaction_rate": ("直播互动率", "Live interaction rate"),
    "conversion_rate": ("观看→购买转化率", "Conversion (viewers → buyers)"),
    "group_buy_success_rate": ("拼团成功率", "Group-buy success rate"),
    "repeat_purchase_rate": ("复购率", "Repeat-purchase rate"),
    "on_time_fulfilment_rate": ("按承诺时间履约率", "On-time fulfilment (vs. promise)"),
    "claim_rate": ("售后申请率", "Claim rate"),
    "return_rate": ("退货退款率(不含拼团差价)", "Return rate (rebates excluded)"),
    "nps": ("NPS 净推荐值", "NPS"),
    "trace_lookup_rate": ("溯源查看率", "Trace look-up rate"),
    "cohorts": ("按首购月份的复购率", "Repeat purchase by first-order month"),
    "nps_trend": ("NPS 月度趋势", "NPS by month"),
    "group_buys_by_community": ("各小区拼团成功率", "Group-buy success by community"),
    "referral_share": ("新买家中邻居推荐的比例", "New buyers who came through a neighbour"),
    "commission": ("推荐佣金", "Referral commission"),
    "ugc_rate_by_batch": ("各批次晒单率", "Post rate by batch"),
    "ugc_per_batch": ("各批次晒单数", "Posts per batch"),
}
# The 品鉴官 figures' charts (trust/koc_metrics.py).
KOC_CHARTS = ("ugc_rate_by_batch", "ugc_per_batch")
SCOPE_NAMES: dict[str, tuple[str, str]] = {
    "session": ("按场次", "by session"), "farm": ("按农场", "by farm"),
    "community": ("按小区", "by community"), "month": ("按月", "by month"),
    "status": ("按状态", "by status"),
    "batch": ("按批次", "by batch"),
}
NO_DATA = ("暂无数据", "No data")
STATUS_NAMES = {"pending": "待确认", "due": "可结算", "paid": "已结算", "reversed": "已冲回"}
PLACEHOLDERS = {"(未知农场)": "(unknown farm)", "(无小区)": "(no community)", "全部": "All",
                "待确认": "Pending", "可结算": "Due", "已结算": "Paid", "已冲回": "Reversed"}


def title(name: str, lang: Lang) -> str:
    pair = TITLES.get(name)
    return pair[lang == "en"] if pair else name


def _text_width(text: str) -> float:
    """Rough rendered width at FONT: wide (CJK) characters 1 em, others ~0.6 em."""
    return sum(FONT if ord(ch) > 0x2E7F else FONT * 0.6 for ch in text)


def wrap(text: str, width: float) -> list[str]:
    """Lines of at most `width` (estimated), breaking at spaces where it can; the last line
    ends in "…" only past MAX_LABEL_LINES, so names up to ~60 characters show in full."""
    lines: list[str] = []
    current = ""
    for ch in text:
        if _text_width(current + ch) > width:
            cut = current.rfind(" ")
            if cut > 0 and ch != " ":
                lines.append(current[:cut])
                current = current[cut + 1:] + ch
            else:
                lines.append(current)
                current = "" if ch == " " else ch
        else:
            current += ch
    if current:
        lines.append(current)
    if len(lines) > MAX_LABEL_LINES:
        lines = [*lines[:MAX_LABEL_LINES - 1], lines[MAX_LABEL_LINES - 1][:-1] + "…"]
    return lines or [""]


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def yuan(value: float) -> str:
    return f"¥{value / 100:,.2f}"


def formatter(name: str) -> Callable[[float], str]:
    if name in ("gmv_fen", "average_order_value_fen", "commission"):
        return yuan
    if name in ("nps", "nps_trend", "ugc_per_batch"):
        return lambda v: f"{v:.0f}"
    return percent


def bar_chart(name: str, items: list[tuple[str, float | None]], scope: str,
              lang: Lang = "zh") -> str:
    """Horizontal bars: (label, value) per bar. Rates on 0..1, NPS on −100..100 around a zero
    line, money scaled to the largest value."""
    items = items[:MAX_BARS]
    is_nps = name in ("nps", "nps_trend")
    is_money = name in ("gmv_fen", "average_order_value_fen", "commission")
    scope_name = SCOPE_NAMES.get(scope, (scope, scope))[lang == "en"]
    heading = f"{title(name, lang)} · {scope_name}"
    span = WIDTH - 2 * PAD - 78  # room for the value after the bar
    top_value = max((float(v) for _l, v in items if v is not None), default=0.0) if is_money else 1.0
    zero_x = PAD + (span / 2 if is_nps else 0)
    body: list[str] = []
    y = TOP
    for label, value in items:
        shown = PLACEHOLDERS.get(label, label) if lang == "en" else label
        lines = wrap(shown, WIDTH - 2 * PAD)
        spans = "".join(f'<tspan x="{PAD}" dy="{0 if i == 0 else LINE}">{escape(line)}</tspan>'
                        for i, line in enumerate(lines))
        body.append(f'<text class="label" x="{PAD}" y="{y + FONT}" fill="#222">{spans}</text>')
        y += LINE * len(lines) + 4
        body.append(f'<rect x="{PAD}" y="{y}" width="{span}" height="{BAR_HEIGHT}" fill="#f1f3f5"/>')
        if value is None:
            body.append(f'<text x="{PAD + span + 6}" y="{y + FONT}" fill="#767676">—</text>')
        else:
            number = float(value)
            if is_nps:
                width = abs(number) / 100 * (span / 2)
                x = zero_x if number >= 0 else zero_x - width
                color = "#2b8a3e" if number >= 0 else "#c92a2a"
            else:
                ratio = number / top_value if is_money and top_value else number
                width = max(0.0, min(1.0, ratio)) * span
                x = PAD
                color = "#1864ab"
            text = formatter(name)(number)
            body.append(f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" '
                        f'fill="{color}"><title>{escape(shown)}: {escape(text)}</title></rect>')
            body.append(f'<text x="{PAD + span + 6}" y="{y + FONT}" fill="#222">{escape(text)}</text>')
        y += BAR_HEIGHT + 14
    if not items:
        body.append(f'<text x="{PAD}" y="{TOP + FONT}" fill="#767676">'
                    f'{escape(NO_DATA[lang == "en"])}</text>')
        y += LINE + 10
    if is_nps and items:
        body.append(f'<line x1="{zero_x}" y1="{TOP}" x2="{zero_x}" y2="{y - 8}" '
                    'stroke="#495057" stroke-dasharray="3,3"/>')
    height = y + 8
    head_lines = wrap(heading, WIDTH - 2 * PAD)
    head = "".join(f'<tspan x="{PAD}" dy="{0 if i == 0 else LINE + 2}">{escape(line)}</tspan>'
                   for i, line in enumerate(head_lines[:2]))
    return "".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(heading)}" '
        f'font-family="sans-serif" font-size="{FONT}">',
        f"<title>{escape(heading)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{PAD}" y="24" font-size="16" font-weight="bold" fill="#111">{head}</text>',
        *body,
        "</svg>",
    ])


def metric_items(metric: str, rows: list[dict[str, Any]]) -> list[tuple[str, float | None]]:
    return [(str(row.get("label") or row.get("key") or ""), row.get(metric)) for row in rows]


def figure_items(name: str, data: dict[str, Any]) -> tuple[list[tuple[str, float | None]], str]:
    """The bars of a figure that is not per group, and the scope it is drawn by."""
    if name == "cohorts":
        return [(f"{r['cohort']} · {r['buyers']}", r["repeat_rate"]) for r in data["cohorts"]], "month"
    if name == "nps_trend":
        return [(f"{r['month']} · {r['answers']}", r["nps"]) for r in data["nps_trend"]], "month"
    if name == "group_buys_by_community":
        return ([(f"{r['label']} · {r['succeeded']}/{r['decided']}", r["success_rate"])
                 for r in data["group_buys_by_community"]], "community")
    if name == "referral_share":
        return ([(f"{r['month']} · {r['referred_buyers']}/{r['new_buyers']}", r["referral_share"])
                 for r in data["referral_share"]], "month")
    if name == "commission":
        return [(STATUS_NAMES.get(r["status"], r["status"]), r["amount_fen"])
                for r in data["commission"]], "status"
    if name == "ugc_rate_by_batch":
        return ([(f"{r['label']} · {r['picked_up']}", r["ugc_rate"]) for r in data["koc"]["ugc_by_batch"]],
                "batch")
    if name == "ugc_per_batch":
        return [(r["label"], float(r["posts"])) for r in data["koc"]["ugc_by_batch"]], "batch"
    raise KeyError(name)
