// My orders: status, pickup point and code, refund before pickup, after-sales entry.
import { api, requireLogin } from "./api.js";
import { has } from "./capabilities.js";
import { $, h, localTime, toast, yuan } from "./dom.js";
import { hasKey, t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();

function statusText(status) {
  const key = `order_status_${status}`;
  return hasKey(key) ? t(key) : String(status || "");
}

function pickup(order) {
  const point = order.pickup_point;
  if (point && typeof point === "object") return [point.name, point.address].filter(Boolean).join(" · ");
  return String(point || order.pickup_point_name || "");
}

function row(order, actions) {
  const amount = order.amount_fen ?? order.total_fen ?? order.price_fen;
  const name = order.product_name || (order.product && order.product.name) || "";
  const li = h("li", { class: "card order", dataset: { id: String(order.id ?? order.order_id), status: order.status || "" } },
    h("div", { class: "pin-head" },
      h("b", { text: name || `#${order.id ?? order.order_id}` }),
      h("span", { class: "badge order-status", text: statusText(order.status) }),
      amount !== undefined ? h("span", { class: "price", text: yuan(amount) }) : null),
    h("p", { class: "muted", text: `${t("order_no")} ${order.id ?? order.order_id} · ×${order.qty ?? 1} · ${localTime(order.paid_at || order.created_at)}` }),
    pickup(order) ? h("p", {}, h("span", { class: "muted", text: `${t("pickup_point")}: ` }), h("span", { text: pickup(order) })) : null,
    order.pickup_code ? h("p", {}, h("span", { class: "muted", text: `${t("pickup_code")}: ` }), h("span", { class: "code", text: order.pickup_code })) : null);
  const bar = h("div", { class: "toolbar" });
  const id = order.id ?? order.order_id;
  if (actions.refund && ["paid", "ready"].includes(order.status)) {
    bar.append(h("button", { type: "button", class: "danger", text: t("refund"), on: { click: async (e) => {
      e.currentTarget.disabled = true;
      try {
        await api(`/api/orders/${id}/refund`, { method: "POST", body: {} });
        load();
      } catch (err) {
        toast(`${t("error")}: ${err.message}`, "error");
        e.currentTarget.disabled = false;
      }
    } } }));
  }
  if (actions.claim) {
    bar.append(h("a", { href: `/orders#claim-${id}`, text: t("after_sales") }));
  }
  if (bar.childElementCount) li.append(bar);
  return li;
}

async function load() {
  if (!requireLogin()) return;
  const actions = { refund: await has("post", "/api/orders/{id}/refund"),
                    claim: await has("post", "/api/orders/{id}/claims") || await has("post", "/api/claims") };
  try {
    const data = await api("/api/orders");
    const orders = Array.isArray(data) ? data : data.orders || data.items || [];
    $("#orders").replaceChildren(...orders.slice(0, 200).map((o) => row(o, actions)));
    $("#empty").hidden = orders.length > 0;
  } catch (err) {
    $("#empty").textContent = err.status === 404 ? t("not_available") : `${t("error")}: ${err.message}`;
    $("#empty").hidden = false;
  }
}

load();
