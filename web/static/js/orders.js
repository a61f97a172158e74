// My orders: status, pickup point and code, refund before pickup, after-sales entry.
import { api, requireLogin, token } from "./api.js";
import { has } from "./capabilities.js";
import { $, h, localTime, yuan } from "./dom.js";
import { hasKey, t } from "./i18n.js";
import { pickupPointText } from "./pickup.js";
import { mountShell } from "./shell.js";

mountShell();

function statusText(status) {
  const key = `order_status_${status}`;
  return hasKey(key) ? t(key) : String(status || "");
}

function row(order, actions) {
  const amount = order.amount_fen ?? order.total_fen ?? order.price_fen;
  const name = order.product_name || (order.product && order.product.name) || order.product_label || "";
  const li = h("li", { class: "card order", dataset: { id: String(order.id ?? order.order_id), status: order.status || "" } },
    h("div", { class: "pin-head" },
      h("b", { class: "order-product", text: name || `#${order.id ?? order.order_id}` }),
      h("span", { class: "badge order-status", text: statusText(order.status) }),
      amount !== undefined ? h("span", { class: "price", text: yuan(amount) }) : null),
    h("p", { class: "muted", text: `${t("order_no")} ${order.id ?? order.order_id} · ×${order.qty ?? 1} · ${localTime(order.paid_at || order.created_at)}` }),
    h("p", { class: "pickup", hidden: true }, h("span", { class: "muted", text: `${t("pickup_point")}: ` }), h("span", { class: "pickup-point" })),
    order.pickup_code ? h("p", {}, h("span", { class: "muted", text: `${t("pickup_code")}: ` }), h("span", { class: "code", text: order.pickup_code })) : null);
  const bar = h("div", { class: "toolbar" });
  const id = order.id ?? order.order_id;
  if (["paid", "ready_for_pickup"].includes(order.status)) {
    // Refunds before pickup are done by the host's staff (POST /api/orders/{id}/refund is
    // staff-only); the buyer asks them, after pickup the after-sales claim below applies.
    bar.append(h("p", { class: "muted refund-hint", text: t("refund_hint") }));
  }
  if (order.claim) {
    // The claim as stored, so a reload shows what was filed and what became of it.
    bar.append(claimBlock(order.claim));
  } else if (actions.claim && ["picked_up", "delivered", "completed"].includes(order.status)) {
    bar.append(h("button", { type: "button", class: "claim-open", text: t("after_sales"),
      on: { click: (e) => { e.currentTarget.replaceWith(claimForm(id)); } } }));
  }
  if (bar.childElementCount) li.append(bar);
  if (!name && order.sale_id) {
    productNameOf(order).then((text) => { if (text) li.querySelector(".order-product").textContent = text; });
  }
  pickupPointText(order).then((text) => {
    if (!text) return;
    li.querySelector(".pickup-point").textContent = text;
    li.querySelector(".pickup").hidden = false;
  });
  return li;
}

const REASONS = [["spoiled", "坏果/变质 / Spoiled"], ["damaged", "破损 / Damaged"], ["missing", "少件 / Missing"],
  ["wrong_item", "发错货 / Wrong item"], ["quality", "与描述不符 / Not as described"], ["other", "其他 / Other"]];

async function upload(file) {
  const response = await fetch("/api/uploads?purpose=claim", {
    method: "POST", body: file,
    headers: { Authorization: `Bearer ${token()}`, "Content-Type": file.type || "application/octet-stream" },
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || `HTTP ${response.status}`);
  return data.id;
}

function claimText(claim) {
  const key = `claim_${claim.status}`;
  return `${t("after_sales")} #${claim.id}: ${hasKey(key) ? t(key) : claim.status}`;
}

const CLAIM_ERRORS = { photo_required: "claim_photo_required", claim_empty: "claim_empty",
  claim_closed: "claim_closed" };

function photoCount(claim) {
  return h("span", { class: "muted claim-photo-count", text: ` · ${t("claim_photos", { n: (claim.photos || []).length })}` });
}

/** Why a claim was refused, in words the buyer can act on. */
function claimError(err) {
  const key = CLAIM_ERRORS[err.code];
  return key ? t(key) : `${t("error")}: ${err.message}`;
}

/** A filed claim: its status, its photos, and while it waits, a way to add another photo. */
function claimBlock(claim) {
  const status = h("p", { class: "claim-line", dataset: { claimStatus: claim.status }, text: claimText(claim) });
  const count = photoCount(claim);
  status.append(count);
  const block = h("div", { class: "stack claim-block" }, status);
  if (claim.status === "pending") block.append(addPhotoForm(claim, count));
  return block;
}

function addPhotoForm(claim, count) {
  const photo = h("input", { type: "file", accept: "image/jpeg,image/png,image/webp", class: "claim-more-photo" });
  const note = h("p", { class: "muted claim-photo-status" });
  return h("form", { class: "claim-photo-form", on: { submit: async (e) => {
    e.preventDefault();
    if (!photo.files || !photo.files[0]) return;
    const button = e.currentTarget.querySelector("button");
    button.disabled = true;
    try {
      const id = await upload(photo.files[0]);
      const updated = await api(`/api/claims/${claim.id}/photos`, { method: "POST", body: { photos: [id] } });
      const fresh = photoCount(updated);
      count.replaceWith(fresh);
      count = fresh;
      note.textContent = t("claim_photo_added");
      photo.value = "";
    } catch (err) {
      note.textContent = claimError(err);
    } finally {
      button.disabled = false;
    }
  } } }, photo, h("button", { type: "submit", text: t("claim_add_photo") }), note);
}

/** After-sales claim: reason, what happened, a photo (uploaded first, then referenced by id). */
function claimForm(orderId) {
  const reason = h("select", { class: "claim-reason" }, ...REASONS.map(([v, label]) => h("option", { value: v, text: label })));
  const description = h("textarea", { class: "claim-text", maxlength: "1000" });
  const photo = h("input", { type: "file", accept: "image/jpeg,image/png,image/webp", class: "claim-photo" });
  const status = h("p", { class: "muted claim-status" });
  const form = h("form", { class: "stack claim-form", on: { submit: async (e) => {
    e.preventDefault();
    const button = e.currentTarget.querySelector("button");
    button.disabled = true;
    try {
      const photos = photo.files && photo.files[0] ? [await upload(photo.files[0])] : [];
      const claim = await api("/api/claims", { method: "POST", body: {
        order_id: orderId, reason: reason.value, description: description.value.trim(), photos } });
      status.textContent = claimText(claim);
      // Filed: the inputs go, the claim (and its add-photo control) stays, as after a reload.
      for (const input of [reason, description, photo, button]) input.hidden = true;
      const count = photoCount(claim);
      status.append(count);
      if (claim.status === "pending") form.after(addPhotoForm(claim, count));
    } catch (err) {
      // Refused before anything was filed (e.g. the photo the policy requires): fix and resend.
      status.textContent = claimError(err);
      button.disabled = false;
    }
  } } }, reason, description, photo, h("button", { type: "submit", text: t("claim_submit") }), status);
  return form;
}

const saleNames = new Map();
function productNameOf(order) {
  if (!saleNames.has(order.sale_id)) {
    saleNames.set(order.sale_id, api(`/api/sales/${order.sale_id}`, { auth: false })
      .then((sale) => (sale.product && sale.product.name) || sale.product_name || "").catch(() => ""));
  }
  return saleNames.get(order.sale_id);
}

async function load() {
  if (!requireLogin()) return;
  const actions = { claim: await has("post", "/api/claims") };
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
