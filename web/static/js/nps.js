// The one-question survey (NPS, 0–10) for one picked-up order, reached from My orders.
import { api, requireLogin } from "./api.js";
import { $, h, pathId } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();

function say(text, ok) {
  const out = $("#nps-result");
  out.textContent = text;
  out.className = ok ? "ok" : "error";
}

async function main() {
  if (!requireLogin()) return;
  const orderId = pathId();
  $("#order-line").textContent = `${t("order_no")} ${orderId}`;
  const scores = $("#scores");
  for (let score = 0; score <= 10; score += 1) {
    scores.append(h("label", {}, h("input", { type: "radio", name: "score", value: String(score) }), String(score)));
  }
  const pending = await api("/api/nps/pending").catch(() => ({ order_ids: [] }));
  if (!(pending.order_ids || []).includes(orderId)) {
    // Not waiting for an answer: answered already, or not collected yet.
    const order = await api(`/api/orders/${orderId}`).catch(() => null);
    const collected = order && ["picked_up", "delivered", "completed"].includes(order.status);
    say(t(collected ? "nps_done" : "nps_not_yet"), false);
    document.body.dataset.ready = "1";
    return;
  }
  const form = $("#nps-form");
  form.hidden = false;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const picked = form.querySelector("input[name=score]:checked");
    if (!picked) { say(t("nps_pick"), false); return; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api("/api/nps", { method: "POST", body: {
        order_id: orderId, score: Number(picked.value), comment: $("#nps-comment").value.trim() } });
      form.hidden = true;
      say(t("nps_thanks"), true);
    } catch (err) {
      button.disabled = false;
      say(err.code === "conflict" || err.code === "already_answered" ? t("nps_done") : `${t("error")}: ${err.message}`, false);
    }
  });
  document.body.dataset.ready = "1";
}

main();
