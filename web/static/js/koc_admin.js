// The host's 品鉴官 back office: open a programme, pick members from the applicants (the quota
// is held by the server), set aside samples of a batch and send one to a member.
import { api } from "./api.js";
import { requireOwner } from "./backoffice.js";
import { $, h } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();

function say(text, ok) {
  const out = $("#message");
  out.textContent = text;
  out.className = ok ? "ok" : "error";
}

let products = [];

function selectedProduct() {
  const id = Number($("#s-product").value);
  return products.find((p) => p.id === id) || null;
}

async function showStock() {
  const product = selectedProduct();
  if (!product) { $("#stock-line").textContent = t("sample_no_product"); return; }
  const data = await api(`/api/koc/batches/${product.batch_id}/samples`).catch(() => null);
  const stock = (data && data.stock) || { units: 0, sent: 0 };
  $("#stock-line").textContent = t("sample_stock_line", { sent: stock.sent, units: stock.units });
}

function applicationRow(app) {
  const row = h("li", { class: "koc-app", dataset: { id: String(app.id), user: String(app.user_id) } },
    h("span", { class: "koc-app-name", text: app.name }),
    h("span", { class: "muted", text: t("koc_progress", { orders: app.progress.orders, reviews: app.progress.reviews }) }),
    h("span", { class: "badge koc-app-status", text: t(`koc_member_${app.status}`) }));
  const act = (label, cls, fn) => {
    const b = h("button", { type: "button", class: cls, text: t(label) });
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await fn(); } catch (err) { say(err.message, false); b.disabled = false; }
    });
    return b;
  };
  if (app.status === "applied") {
    row.append(act("koc_select", "primary koc-select", async () => {
      await api(`/api/koc/applications/${app.id}/select`, { method: "POST" });
      say(t("koc_selected_ok", { name: app.name }), true);
      await loadProgrammes();
    }), act("koc_reject", "koc-reject", async () => {
      await api(`/api/koc/applications/${app.id}/reject`, { method: "POST" });
      await loadProgrammes();
    }));
  } else if (app.status === "selected") {
    row.append(act("sample_send", "koc-send", async () => {
      const product = selectedProduct();
      if (!product) { say(t("sample_no_product"), false); return; }
      await api("/api/koc/samples", { method: "POST", body: {
        product_id: product.id, user_id: app.user_id, due_days: Number($("#s-due").value) || 7 } });
      say(t("sample_sent", { name: app.name }), true);
      await showStock();
    }));
  }
  return row;
}

async function programmeCard(programme) {
  const apps = await api(`/api/koc/programmes/${programme.id}/applications`).catch(() => ({ items: [] }));
  return h("li", { class: "card koc-programme", dataset: { id: String(programme.id) } },
    h("h3", { text: programme.title }),
    h("p", { class: "muted", text: t("koc_quota", { selected: programme.selected, quota: programme.quota }) }),
    (apps.items || []).length ? h("ul", { class: "koc-apps" }, apps.items.map(applicationRow))
      : h("p", { class: "muted", text: t("koc_no_applicants") }));
}

async function loadProgrammes() {
  const list = await api("/api/koc/programmes/hosted");
  const cards = await Promise.all((list.items || []).map(programmeCard));
  $("#programmes").replaceChildren(...cards);
}

async function main() {
  if (!requireOwner()) return;
  $("#owner-only").hidden = false;
  products = (await api("/api/products").catch(() => [])).filter((p) => p.batch_id);
  $("#s-product").replaceChildren(...products.map((p) => h("option", { value: String(p.id), text: p.name })));
  $("#s-product").addEventListener("change", showStock);
  $("#programme-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/api/koc/programmes", { method: "POST", body: {
        title: $("#p-title").value.trim(), rules: $("#p-rules").value.trim(),
        badge: $("#p-badge").value.trim() || "品鉴官", quota: Number($("#p-quota").value),
        min_orders: Number($("#p-min-orders").value), min_reviews: Number($("#p-min-reviews").value),
        exit_days: Number($("#p-exit").value) } });
      e.target.reset();
      say(t("koc_opened"), true);
      await loadProgrammes();
    } catch (err) { say(err.message, false); }
  });
  $("#stock-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const product = selectedProduct();
    if (!product) { say(t("sample_no_product"), false); return; }
    try {
      await api(`/api/koc/batches/${product.batch_id}/sample-stock`, { method: "PUT",
        body: { units: Number($("#s-units").value) } });
      await showStock();
    } catch (err) { say(err.message, false); }
  });
  await Promise.all([loadProgrammes(), showStock()]);
  document.body.dataset.ready = "1";
}

main();
