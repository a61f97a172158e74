// /referrals: my share link, the neighbours who came through it (names masked) and my
// commission: pending until their order is picked up, due after, then paid.
import { api, requireLogin } from "./api.js";
import { $, h, localTime, yuan } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();
const STATUSES = ["pending", "due", "paid", "reversed"];

function render(data) {
  $("#ref-link").value = data.links.home;
  $("#ref-totals").replaceChildren(...STATUSES.map((status) => h("li", { class: "tile", "data-status": status },
    h("span", { class: "value", text: yuan(data.totals[`${status}_fen`] || 0) }),
    h("span", { class: "name", text: t(`ref_status_${status}`) }))));
  $("#ref-buyers").replaceChildren(...data.buyers.map((buyer) => h("li", { class: "ref-item" },
    h("span", { class: "ref-name", text: buyer.name }),
    h("span", { class: "muted", text: localTime(buyer.arrived_at) }),
    h("span", { class: buyer.bought ? "badge ok" : "badge", text: t(buyer.bought ? "ref_bought" : "ref_not_yet") }))));
  $("#ref-buyers-empty").hidden = data.buyers.length > 0;
  $("#ref-rows").replaceChildren(...data.commissions.map((row) => h("li", { class: "ref-item", "data-status": row.status },
    h("span", { class: "ref-amount", text: yuan(row.net_fen) }),
    h("span", { class: "muted", text: `${(row.rate_bp / 100).toFixed(1)}% · ${t(`ref_role_${row.role}`)}` }),
    h("span", { class: `badge status-${row.status}`, text: t(`ref_status_${row.status}`) }))));
  $("#ref-rows-empty").hidden = data.commissions.length > 0;
}

async function load() {
  if (!requireLogin()) return;
  render(await api("/api/referrals/me"));
}

$("#ref-copy").addEventListener("click", async () => {
  const input = $("#ref-link");
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    document.execCommand?.("copy");
  }
  $("#ref-copied").textContent = t("ref_copied");
});

load().catch((err) => { $("#ref-copied").textContent = `${t("error")}: ${err.message}`; });
