// Pickup day for staff (host, 团长, assistant): the orders of a session / community / pickup point,
// mark many ready in one call, confirm pickups by typed or scanned code, print the pick list,
// export CSV. Works on a phone at the pickup point and on a laptop.
import { api, currentUser, requireLogin, token } from "./api.js";
import { $, h, localTime, toast, yuan } from "./dom.js";
import { hasKey, t } from "./i18n.js";
import { parsePickupQr, startScanner } from "./qr_scan.js";
import { mountShell } from "./shell.js";

const PAGE = 100;
const MAX_PAGES = 20; // 2,000 orders: a pickup point's day, several times over
const STAFF = ["host", "assistant", "admin"];

const state = { orders: [], selected: new Set(), stopScan: null, generation: 0 };

function statusText(status) {
  const key = `order_status_${status}`;
  return hasKey(key) ? t(key) : String(status || "");
}

function filters() {
  const query = new URLSearchParams();
  for (const [name, id] of [["session_id", "#f-session"], ["community_id", "#f-community"],
    ["pickup_point_id", "#f-point"], ["status", "#f-status"]]) {
    const value = $(id).value;
    if (value) query.set(name, value);
  }
  return query;
}

async function loadAll() {
  const query = filters();
  query.set("limit", String(PAGE));
  const found = [];
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const data = await api(`/api/orders?${query}`);
    found.push(...data.items);
    if (!data.next) break;
    query.set("cursor", data.next);
  }
  return found;
}

function times(order) {
  const lines = [[t("pickup_paid_at"), order.paid_at], [t("pickup_ready_at"), order.ready_at],
    [t("pickup_picked_at"), order.picked_up_at]].filter(([, iso]) => iso);
  return lines.map(([label, iso]) => h("div", { class: "when" }, `${label} ${localTime(iso)}`));
}

function row(order) {
  const id = order.id;
  const box = h("input", { type: "checkbox", class: "pick", "aria-label": `${t("pickup_select")} ${id}`,
    checked: state.selected.has(id), disabled: order.status !== "paid",
    on: { change: (e) => { if (e.target.checked) state.selected.add(id); else state.selected.delete(id); updateBar(); } } });
  const point = order.pickup_point ? order.pickup_point.name : "—";
  return h("tr", { dataset: { id: String(id), status: order.status } },
    h("td", { class: "c-select no-print" }, box),
    h("td", { class: "c-id" }, `#${id}`),
    h("td", { class: "c-buyer" }, order.buyer_name || ""),
    h("td", { class: "c-status" }, h("span", { class: `state state-${order.status}`, text: statusText(order.status) })),
    h("td", { class: "c-product" }, order.product_name || "",
      order.gift ? h("span", { class: "badge gift", text: t("gift_included") }) : null),
    h("td", { class: "c-qty" }, `×${order.qty}`),
    h("td", { class: "c-amount" }, yuan(order.amount_fen)),
    h("td", { class: "c-point" }, point),
    h("td", { class: "c-times" }, ...times(order)),
    h("td", { class: "print-only sign" }, ""));
}

function render() {
  const list = state.orders;
  $("#orders tbody").replaceChildren(...list.map(row));
  $("#empty").hidden = list.length > 0;
  updateBar();
}

function updateBar() {
  const paid = state.orders.filter((o) => o.status === "paid").length;
  const ready = state.orders.filter((o) => o.status === "ready_for_pickup").length;
  $("#summary").textContent = t("pickup_summary", { n: state.orders.length, paid, ready, selected: state.selected.size });
  $("#mark-ready").disabled = state.selected.size === 0;
  const all = $("#select-all");
  all.checked = paid > 0 && state.selected.size === paid;
  all.disabled = paid === 0;
  $("#print-scope").textContent = scopeText();
}

function scopeText() {
  const parts = ["#f-session", "#f-community", "#f-point", "#f-status"]
    .map((id) => $(id)).filter((el) => el.value).map((el) => el.selectedOptions[0].textContent);
  return `${parts.join(" · ") || t("pickup_all_orders")} · ${localTime(new Date().toISOString())}`;
}

async function refresh() {
  // Filters change faster than answers come: only the latest request may draw the list.
  state.generation += 1;
  const mine = state.generation;
  document.body.dataset.loading = "1";
  try {
    const found = await loadAll();
    if (mine !== state.generation) return;
    state.orders = found;
    const payable = new Set(state.orders.filter((o) => o.status === "paid").map((o) => o.id));
    for (const id of [...state.selected]) if (!payable.has(id)) state.selected.delete(id);
    render();
  } catch (err) {
    if (mine === state.generation) $("#summary").textContent = `${t("error")}: ${err.message}`;
  } finally {
    if (mine === state.generation) delete document.body.dataset.loading;
  }
}

async function markReady() {
  const ids = [...state.selected];
  if (!ids.length) return;
  const button = $("#mark-ready");
  button.disabled = true;
  try {
    const result = await api("/api/orders/ready", { method: "POST", body: { order_ids: ids } });
    state.selected.clear();
    toast(t("pickup_marked", { n: result.ready.length, already: result.already.length, refused: result.refused.length }));
    $("#summary").dataset.lastReady = String(result.ready.length);
  } catch (err) {
    toast(`${t("error")}: ${err.message}`, "error");
  }
  await refresh();
}

function say(text, ok) {
  const out = $("#confirm-result");
  out.textContent = text;
  out.className = ok ? "ok" : "error";
}

/** Orders of the current scope waiting with this code: the loaded list first, else (when the
 * list is filtered to another status) the scope's orders ready for pickup. */
async function ordersWithCode(code) {
  const waiting = (o) => o.pickup_code === code && ["paid", "ready_for_pickup"].includes(o.status);
  const loaded = state.orders.filter(waiting);
  if (loaded.length || !$("#f-status").value) return loaded;
  const query = filters();
  query.set("status", "ready_for_pickup");
  query.set("limit", String(PAGE));
  const found = [];
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const data = await api(`/api/orders?${query}`);
    found.push(...data.items.filter(waiting));
    if (!data.next) break;
    query.set("cursor", data.next);
  }
  return found;
}

/** Confirm with the code: the order named by a scanned QR, else the loaded order with that code. */
async function confirm(code, orderId = null) {
  const typed = String(code || "").trim();
  if (!/^\d{4,12}$/.test(typed)) { say(t("pickup_code_invalid"), false); return; }
  const candidates = orderId ? [{ id: orderId }] : await ordersWithCode(typed);
  if (!candidates.length) { say(t("pickup_code_unknown"), false); return; }
  const done = [];
  for (const order of candidates) {
    try {
      await api(`/api/orders/${order.id}/picked-up`, { method: "POST", body: { pickup_code: typed } });
      done.push(order.id);
    } catch (err) {
      const key = err.code === "forbidden" ? "pickup_code_unknown"
        : err.details && err.details.status === "paid" ? "pickup_not_ready"
          : err.details && err.details.status === "picked_up" ? "pickup_already" : null;
      say(key ? t(key) : `${t("error")}: ${err.message}`, false);
    }
  }
  if (done.length) {
    const known = new Map([...state.orders, ...candidates].filter((o) => o.buyer_name !== undefined).map((o) => [o.id, o]));
    const names = done.map((id) => known.get(id)).filter(Boolean).map((o) => `#${o.id} ${o.buyer_name} ${o.product_name} ×${o.qty}`);
    say(`${t("pickup_done")} ${names.join(";") || done.map((id) => `#${id}`).join(" ")}`, true);
    $("#code").value = "";
  }
  await refresh();
}

async function toggleScan() {
  const video = $("#scan-video");
  if (state.stopScan) {
    state.stopScan();
    state.stopScan = null;
    video.hidden = true;
    $("#scan").textContent = t("pickup_scan");
    return;
  }
  try {
    video.hidden = false;
    $("#scan").textContent = t("pickup_scan_stop");
    state.stopScan = await startScanner(video, (text) => {
      state.stopScan = null;
      video.hidden = true;
      $("#scan").textContent = t("pickup_scan");
      const found = parsePickupQr(text);
      if (!found) { say(t("pickup_qr_unknown"), false); return; }
      $("#code").value = found.code;
      confirm(found.code, found.orderId);
    });
  } catch (err) {
    video.hidden = true;
    $("#scan").textContent = t("pickup_scan");
    say(t("pickup_no_camera"), false);
  }
}

async function downloadCsv() {
  const response = await fetch(`/api/orders.csv?${filters()}`, { headers: { Authorization: `Bearer ${token()}` } });
  if (!response.ok) { toast(`${t("error")}: HTTP ${response.status}`, "error"); return; }
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: `orders-${new Date().toISOString().slice(0, 10)}.csv`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function option(value, text) {
  return h("option", { value: String(value), text });
}

async function loadPoints() {
  const community = $("#f-community").value;
  const select = $("#f-point");
  select.replaceChildren(option("", t("pickup_all_points")));
  if (!community) return;
  const points = await api(`/api/communities/${community}/pickup-points`, { auth: false }).catch(() => []);
  select.append(...points.map((p) => option(p.id, p.name)));
}

async function setup(user, led) {
  if (led) {
    // A 团长 works his own communities' orders only: one of them is always chosen.
    $("#f-session").closest("label").hidden = true;
    $("#f-community").replaceChildren(...led.map((c) => option(c.id, c.name)));
    $("#summary").dataset.scope = "leader";
    $("#print-scope").before(h("p", { class: "muted no-print", id: "leader-scope", text: t("pickup_leader_scope") }));
  } else {
    const [sessions, communities] = await Promise.all([
      api("/api/sessions", { auth: false }).catch(() => []),
      api("/api/communities", { auth: false }).catch(() => []),
    ]);
    const own = user.role === "host" ? sessions.filter((s) => s.host_id === user.id) : sessions;
    $("#f-session").append(...own.map((s) => option(s.id, `${s.title} · ${t(`status_${s.status}`)}`)));
    $("#f-community").append(...communities.map((c) => option(c.id, c.name)));
  }
  const params = new URLSearchParams(location.search);
  for (const [name, id] of [["session_id", "#f-session"], ["community_id", "#f-community"], ["status", "#f-status"]]) {
    if (params.get(name) && [...$(id).options].some((o) => o.value === params.get(name))) $(id).value = params.get(name);
  }
  await loadPoints();
  if (params.get("pickup_point_id")) $("#f-point").value = params.get("pickup_point_id");
}

async function main() {
  const user = mountShell();
  if (!requireLogin()) return;
  const staff = user && STAFF.includes(user.role);
  const led = user && !staff ? await api("/api/me/communities").catch(() => []) : null;
  if (!user || (!staff && !led.length)) {
    for (const el of document.querySelectorAll("#filters, #confirm, .bulk, .table-wrap")) el.hidden = true;
    $("#summary").textContent = t("pickup_staff_only");
    return;
  }
  await setup(user, staff ? null : led);
  $("#filters").addEventListener("change", async (e) => {
    if (e.target.id === "f-community") await loadPoints();
    const query = filters();
    history.replaceState(null, "", query.toString() ? `?${query}` : location.pathname);
    await refresh();
  });
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
  $("#select-all").addEventListener("change", (e) => {
    state.selected = new Set(e.target.checked ? state.orders.filter((o) => o.status === "paid").map((o) => o.id) : []);
    render();
  });
  $("#mark-ready").addEventListener("click", markReady);
  $("#confirm-form").addEventListener("submit", (e) => { e.preventDefault(); confirm($("#code").value); });
  $("#scan").addEventListener("click", toggleScan);
  $("#print").addEventListener("click", () => window.print());
  $("#csv").addEventListener("click", downloadCsv);
  await refresh();
  document.body.dataset.ready = "1";
}

main();
window.linliPickup = { state, refresh };
