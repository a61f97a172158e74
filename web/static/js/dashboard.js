// The shop's dashboard: headline figures, a table per session / farm / community, and each figure
// as a chart with its CSV. Charts are <img> on signed URLs the API hands out (an <img> sends no
// bearer token); CSV downloads need the token, so they are fetched and saved through a blob: URL.
import { api, currentUser, requireLogin, token } from "./api.js";
import { $, h } from "./dom.js";
import { lang, t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();
const STAFF = new Set(["admin", "host", "assistant"]);
// Figures drawn below the table, in this order, each with its chart and CSV.
const FIGURES = ["gmv_fen", "average_order_value_fen", "conversion_rate", "live_interaction_rate",
  "return_rate", "on_time_fulfilment_rate", "repeat_purchase_rate", "cohorts", "nps", "nps_trend",
  "trace_lookup_rate", "group_buy_success_rate", "group_buys_by_community", "claim_rate",
  "referral_share", "commission", "ugc_rate_by_batch", "ugc_per_batch"];
let current = null;

function say(text) {
  $("#message").textContent = text;
  $("#message").hidden = !text;
}

function denied() {
  $("#board").hidden = true;
  $("#denied").textContent = t("dashboard_no_access");
  $("#denied").hidden = false;
}

function query() {
  const params = new URLSearchParams({ by: $("#scope").value, lang: lang() });
  const days = $("#days").value.trim();
  if (days) params.set("days", days);
  return params;
}

function title(name) {
  const pair = (current && current.titles && current.titles[name]) || null;
  return pair ? pair[lang()] || pair.zh : name;
}

function show(metric, value) {
  if (value === null || value === undefined) return "–";
  const n = Number(value);
  if (metric === "gmv_fen" || metric === "average_order_value_fen") {
    return `¥${(n / 100).toLocaleString(lang() === "en" ? "en-US" : "zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  }
  if (metric === "nps") return String(Math.round(n));
  return `${(n * 100).toFixed(1)}%`;
}

function label(row) {
  const text = row.label || String(row.key);
  if (lang() !== "en") return text;
  return { "(未知农场)": "(unknown farm)", "(无小区)": "(no community)" }[text] || text;
}

async function download(figure) {
  const params = query();
  params.delete("lang");
  params.set("figure", figure);
  const response = await fetch(`/api/dashboard.csv?${params}`, { headers: { Authorization: `Bearer ${token()}` } });
  if (response.status === 401 || response.status === 403) { denied(); return; }
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
  const link = h("a", { href: url, download: name ? name[1] : `linli-dashboard-${figure}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function csvButton(figure) {
  return h("button", { type: "button", class: "csv", "data-figure": figure, text: t("export_csv"),
    "aria-label": `${t("export_csv")}: ${title(figure)}` });
}

function render(data) {
  current = data;
  const head = data.headline;
  $("#headline").replaceChildren(...data.metrics.map((m) => h("li", { class: "tile", "data-metric": m },
    h("span", { class: "value", text: show(m, head[m]) }),
    h("span", { class: "name", text: title(m) }))));
  $("#metrics thead").replaceChildren(h("tr", {}, h("th", { scope: "col", text: t(`by_${data.by}`) }),
    ...data.metrics.map((m) => h("th", { scope: "col", text: title(m) }))));
  $("#metrics tbody").replaceChildren(...data.rows.slice(0, 500).map((row) => h("tr", {},
    h("th", { scope: "row", text: label(row) }),
    ...data.metrics.map((m) => h("td", { text: show(m, row[m]) })))));
  say(data.rows.length ? "" : t("dashboard_empty"));
  const koc = (data.koc && data.koc.headline) || {};
  const pct = (v) => (v === null || v === undefined ? "–" : `${(Number(v) * 100).toFixed(1)}%`);
  $("#koc-tiles").replaceChildren(...[
    ["ugc_rate", pct(koc.ugc_rate), t("dashboard_koc_ugc_rate", { n: koc.ugc_from_picked_up ?? 0, d: koc.picked_up_orders ?? 0 })],
    ["koc_activity_rate", pct(koc.koc_activity_rate), t("dashboard_koc_activity", { n: koc.koc_active ?? 0, d: koc.koc_members ?? 0 })],
    ["ugc_approved", String(koc.ugc_approved ?? 0), t("dashboard_koc_posts")],
    ["point_liabilities", String(koc.point_liabilities ?? 0), t("dashboard_koc_liabilities")],
  ].map(([key, value, name]) => h("li", { class: "tile", "data-koc": key },
    h("span", { class: "value", text: value }), h("span", { class: "name", text: name }))));
  $("#figures").replaceChildren(...FIGURES.filter((f) => data.charts[f]).map((figure) => {
    const id = `fig-${figure}`;
    return h("section", { class: "card figure", id, "aria-labelledby": `${id}-title` },
      h("div", { class: "figure-head" }, h("h2", { id: `${id}-title`, text: title(figure) }),
        csvButton(figure)),
      h("img", { src: data.charts[figure], alt: title(figure), "data-figure": figure }),
      h("p", { class: "muted note", text: t(`dashboard_note_${figure}`) }));
  }));
}

async function load() {
  let data;
  try {
    data = await api(`/api/dashboard?${query()}`);
  } catch (err) {
    if (err.status === 401 || err.status === 403) denied();
    else say(`${t("error")}: ${err.message}`);
    return;
  }
  render(data);
}

// Admins also see the daily reconciliations of the money ledger against each provider's bill.
function issueText(issue) {
  const amounts = [issue.ledger_fen, issue.bill_fen].map((f) => (f === null || f === undefined ? "–" : `¥${(f / 100).toFixed(2)}`));
  return `${t(`recon_${issue.code}`)} · ${issue.kind} ${issue.key} (${amounts.join(" / ")})`;
}

async function loadReconciliations() {
  let data;
  try {
    data = await api("/api/payments/reconciliations");
  } catch {
    return;
  }
  $("#recon-table tbody").replaceChildren(...data.items.map((run) => h("tr", { "data-issues": String(run.issue_count) },
    h("th", { scope: "row", text: run.day }),
    h("td", { text: run.provider }),
    h("td", { text: `${run.ledger_lines} / ${run.bill_lines}` }),
    h("td", {}, run.issue_count === 0
      ? h("span", { class: "ok", text: t("recon_clean") })
      : h("ul", { class: "issues" }, ...run.issues.slice(0, 50).map((issue) => h("li", { text: issueText(issue) })))))));
  if (!data.items.length) $("#recon-table tbody").replaceChildren(h("tr", {}, h("td", { colspan: "4", text: t("recon_none") })));
  $("#reconciliations").hidden = false;
}

$("#scope-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
$("#app").addEventListener("click", async (e) => {
  const button = e.target.closest("button.csv");
  if (!button) return;
  try {
    await download(button.dataset.figure);
  } catch (err) {
    say(`${t("error")}: ${err.message}`);
  }
});

if (requireLogin()) {
  if (!STAFF.has((currentUser() || {}).role)) {
    denied();
  } else {
    $("#board").hidden = false;
    load();
    if ((currentUser() || {}).role === "admin") loadReconciliations();
  }
}
