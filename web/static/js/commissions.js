// /commissions (hosts, admins): referral and 团长 rates on my sessions and products, what is
// pending / due / paid per beneficiary (CSV too), and paying what is due for a period.
import { api, token } from "./api.js";
import { requireOwner } from "./backoffice.js";
import { $, h, yuan } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();
const targets = new Map();

function say(selector, text) {
  $(selector).textContent = text;
}

function thisMonth() {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit" }).formatToParts(new Date());
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}`;
}

async function loadTargets(me) {
  const query = me.role === "admin" ? "" : `?host_id=${me.id}`;
  const [sessions, products] = await Promise.all([api(`/api/sessions${query}`, { auth: false }), api("/api/products")]);
  const options = [];
  for (const s of sessions) {
    targets.set(`session:${s.id}`, `${t("comm_scope_session")} · ${s.title}`);
    options.push(h("option", { value: `session:${s.id}`, text: targets.get(`session:${s.id}`) }));
  }
  for (const p of products) {
    targets.set(`product:${p.id}`, `${t("comm_scope_product")} · ${p.name}`);
    options.push(h("option", { value: `product:${p.id}`, text: targets.get(`product:${p.id}`) }));
  }
  $("#rate-target").replaceChildren(...options);
}

async function loadRates() {
  const data = await api("/api/commission-rates");
  $("#rates").replaceChildren(...data.items.map((r) => h("li", { class: "ref-item" },
    h("span", { class: "ref-name", text: targets.get(`${r.scope}:${r.target_id}`) || `${r.scope} #${r.target_id}` }),
    h("span", { text: t(`comm_kind_${r.kind}`) }),
    h("span", { class: "badge", text: `${(r.rate_bp / 100).toFixed(1)}%` }))));
}

async function loadReport() {
  const data = await api("/api/commissions/report");
  $("#report tbody").replaceChildren(...data.items.map((row) => h("tr", { "data-beneficiary": String(row.beneficiary_id) },
    h("th", { scope: "row", text: row.display_name || row.username || `#${row.beneficiary_id}` }),
    h("td", { text: yuan(row.pending_fen) }),
    h("td", { class: "due", text: yuan(row.due_fen) }),
    h("td", { text: yuan(row.paid_fen) }),
    h("td", {}, row.due_fen > 0
      ? h("button", { type: "button", class: "primary pay", "data-beneficiary": String(row.beneficiary_id), text: t("comm_pay") })
      : null))));
  if (!data.items.length) say("#report-status", t("comm_report_none"));
}

async function pay(beneficiary) {
  const body = { beneficiary_id: Number(beneficiary), period: $("#pay-period").value.trim(),
    method: $("#pay-method").value, note: $("#pay-note").value.trim() };
  const payout = await api("/api/commissions/payouts", { method: "POST", body });
  await loadReport();
  say("#report-status", t(payout.created ? "comm_paid" : "comm_paid_before", { amount: yuan(payout.amount_fen), period: payout.period }));
}

async function downloadCsv() {
  const response = await fetch("/api/commissions/report.csv", { headers: { Authorization: `Bearer ${token()}` } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: "linli-commissions.csv" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

$("#rate-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const [scope, id] = $("#rate-target").value.split(":");
  const rate_bp = Math.round(Number($("#rate-pct").value) * 100);
  try {
    await api("/api/commission-rates", { method: "PUT", body: { scope, target_id: Number(id), kind: $("#rate-kind").value, rate_bp } });
    say("#rate-status", t("comm_rate_saved"));
    await loadRates();
  } catch (err) {
    say("#rate-status", err.message);
  }
});

$("#report").addEventListener("click", async (e) => {
  const button = e.target.closest("button.pay");
  if (!button) return;
  button.disabled = true;
  try {
    await pay(button.dataset.beneficiary);
  } catch (err) {
    say("#report-status", err.message);
    button.disabled = false;
  }
});

$("#report-csv").addEventListener("click", () => downloadCsv().catch((err) => say("#report-status", err.message)));

async function load() {
  const me = requireOwner();
  if (!me) return;
  $("#pay-period").value = thisMonth();
  await loadTargets(me);
  await Promise.all([loadRates(), loadReport()]);
}

load().catch((err) => say("#report-status", `${t("error")}: ${err.message}`));
