// My orders: each order's progress (paid → ready → picked up), the pickup code as text and QR,
// the pickup point with its hours, gift and refund, the survey after pickup, after-sales.
import { api, requireLogin, token } from "./api.js";
import { has } from "./capabilities.js";
import { $, h, localTime, yuan } from "./dom.js";
import { hasKey, t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();

function statusText(status) {
  const key = `order_status_${status}`;
  return hasKey(key) ? t(key) : String(status || "");
}

const STEPS = [["paid", "paid_at", "step_paid"], ["ready_for_pickup", "ready_at", "step_ready"],
  ["picked_up", "picked_up_at", "step_picked_up"]];
const WAITING = ["paid", "ready_for_pickup"];

/** paid → ready → picked up, each with its local time once reached; a refund ends the line. */
function timeline(order) {
  const steps = STEPS.map(([status, field, key]) => ({ status, at: order[field], label: t(key) }));
  if (order.refunded_at || order.status === "refunded") {
    steps.splice(steps.findIndex((s) => !s.at), Infinity,
      { status: "refunded", at: order.refunded_at, label: t("step_refunded") });
  }
  return h("ol", { class: "timeline", "aria-label": t("order_timeline") },
    ...steps.map((step) => h("li", { class: step.at ? "done" : "todo", dataset: { step: step.status } },
      h("span", { class: "step-label", text: step.label }),
      step.at ? h("time", { datetime: step.at, text: localTime(step.at) }) : null)));
}

function pointBlock(order) {
  const point = order.pickup_point;
  if (!point) return null;
  return h("div", { class: "point" },
    h("p", {}, h("span", { class: "muted", text: `${t("pickup_point")}: ` }), h("b", { class: "pickup-point", text: point.name })),
    point.address ? h("p", { class: "point-address", text: point.address }) : null,
    point.hours ? h("p", { class: "point-hours" }, h("span", { class: "muted", text: `${t("pickup_hours")}: ` }), point.hours) : null);
}

/** The code as text and as a QR (fetched with the token: the image is the buyer's only). */
function codeBlock(order) {
  if (!order.pickup_code || !WAITING.includes(order.status)) return null;
  const img = h("img", { class: "pickup-qr", alt: `${t("pickup_qr_alt")} ${order.pickup_code}`, width: "160", height: "160", hidden: true });
  fetch(`/api/orders/${order.id}/pickup-qr.svg`, { headers: { Authorization: `Bearer ${token()}` } })
    .then((r) => (r.ok ? r.blob() : null))
    .then((blob) => { if (blob) { img.src = URL.createObjectURL(blob); img.hidden = false; } })
    .catch(() => {});
  return h("div", { class: "pickup-block" },
    h("p", {}, h("span", { class: "muted", text: `${t("pickup_code")}: ` }), h("span", { class: "code", text: order.pickup_code })),
    img);
}

function row(order, actions) {
  const name = order.product_name || `#${order.id}`;
  const li = h("li", { class: "card order", dataset: { id: String(order.id), status: order.status || "" } },
    h("div", { class: "pin-head" },
      h("b", { class: "order-product", text: name }),
      order.gift ? h("span", { class: "badge gift", text: t("gift_included") }) : null,
      h("span", { class: "badge order-status", text: statusText(order.status) }),
      h("span", { class: "price", text: yuan(order.amount_fen) })),
    h("p", { class: "muted", text: `${t("order_no")} ${order.id} · ×${order.qty ?? 1}` }),
    timeline(order),
    order.refunded_fen > 0 ? h("p", { class: "refund-state", text: t("refund_amount", { amount: yuan(order.refunded_fen) }) }) : null,
    codeBlock(order),
    pointBlock(order));
  const bar = h("div", { class: "toolbar" });
  const id = order.id;
  if (WAITING.includes(order.status)) {
    // Refunds before pickup are done by the host's staff (POST /api/orders/{id}/refund is
    // staff-only); the buyer asks them, after pickup the after-sales claim below applies.
    bar.append(h("p", { class: "muted refund-hint", text: t("refund_hint") }));
  }
  if (["picked_up", "delivered", "completed"].includes(order.status)) {
    bar.append(actions.posted.has(id) ? h("span", { class: "badge ok", text: t("ugc_posted") })
      : h("a", { class: "ugc-link button-link", href: `/ugc/new?order=${id}`, text: t("ugc_write") }));
  }
  if (actions.surveys.has(id)) {
    bar.append(h("a", { class: "nps-link button-link", href: `/nps/${id}`, text: t("nps_link") }));
  }
  if (order.claim) {
    // The claim as stored, so a reload shows what was filed and what became of it.
    bar.append(claimBlock(order.claim));
  } else if (actions.claim && ["picked_up", "delivered", "completed"].includes(order.status)) {
    bar.append(h("button", { type: "button", class: "claim-open", text: t("after_sales"),
      on: { click: (e) => { e.currentTarget.replaceWith(claimForm(id)); } } }));
  }
  if (bar.childElementCount) li.append(bar);
  return li;
}

// In the page's one language, from the translation table (claim_reason_<code>).
const REASONS = ["spoiled", "damaged", "missing", "wrong_item", "quality", "other"];

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
  const block = h("div", { class: "stack claim-block" }, status, ...claimOutcome(claim));
  if (claim.status === "pending") block.append(addPhotoForm(claim, count));
  return block;
}

const MONEY_STATES = { paid: "claim_money_paid", awaiting_payee: "claim_money_awaiting" };

/** What became of a decided claim: the reason given, the refund and the compensation paid. */
function claimOutcome(claim) {
  const paid = (state) => t(MONEY_STATES[state] || "claim_money_pending");
  return [
    claim.decision_note && claim.status !== "pending"
      ? h("p", { class: "claim-decision", text: `${t("claim_decision")}: ${claim.decision_note}` }) : null,
    claim.status === "approved" && claim.refund_fen > 0
      ? h("p", { class: "claim-refund", dataset: { state: claim.refund_status || "" },
        text: `${t("claim_refund_line", { amount: yuan(claim.refund_fen) })} · ${paid(claim.refund_status)}` }) : null,
    claim.status === "approved" && claim.compensation_fen > 0
      ? h("p", { class: "claim-compensation", dataset: { state: claim.compensation_status || "" },
        text: `${t("claim_compensation_line", { amount: yuan(claim.compensation_fen) })} · ${paid(claim.compensation_status)}` }) : null,
    claim.status === "approved" && claim.compensation_status === "awaiting_payee" ? receiveBlock(claim) : null,
  ].filter(Boolean);
}

const WECHAT = "linli.wechat";

/** 绑定微信 when WeChat sign-in is set up here: WeChat's consent, then back to this page. */
async function linkWechatButton(block, note) {
  try {
    if (!(await api("/api/auth/providers", { auth: false })).wechat) return;
  } catch {
    return;
  }
  const link = h("button", { type: "button", class: "link-wechat", text: t("link_wechat") });
  link.addEventListener("click", async () => {
    link.disabled = true;
    try {
      const started = await api("/api/auth/wechat/start", { method: "POST", body: { link: true } });
      // The key stays in this tab: the callback proves the trip began in this browser.
      sessionStorage.setItem(WECHAT, JSON.stringify({ state: started.state, browser_key: started.browser_key, next: "/orders" }));
      location.assign(started.authorize_url);
    } catch (err) {
      note.textContent = `${t("error")}: ${err.message}`;
      link.disabled = false;
    }
  });
  block.prepend(link);
  block.prepend(note);
}

/** A compensation that waits for an account (待领取): why, and a button to receive it once she
 * signed in with WeChat (the transfer is tried again with the same key: paid once). */
function receiveBlock(claim) {
  const reasonKey = `claim_wait_${claim.compensation_waiting_reason || "no_payee_account"}`;
  const note = h("p", { class: "muted claim-receive-note", role: "status",
    text: t(hasKey(reasonKey) ? reasonKey : "claim_wait_no_payee_account") });
  const button = h("button", { type: "button", class: "claim-receive", text: t("claim_receive") });
  const block = h("div", { class: "stack claim-receive-block" }, note, button);
  if (claim.compensation_waiting_reason === "no_wechat_account") linkWechatButton(block, note);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const fresh = await api(`/api/claims/${claim.id}/compensation`, { method: "POST" });
      block.closest(".claim-block")?.replaceWith(claimBlock(fresh));
    } catch (err) {
      note.textContent = err.code === "no_payee_account" ? t("claim_receive_still_none") : `${t("error")}: ${err.message}`;
      button.disabled = false;
    }
  });
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
  } } }, labelled("claim_more_photo_label", photo), h("button", { type: "submit", text: t("claim_add_photo") }), note);
}

/** A field with its visible name: the label wraps it, so a tap on the words focuses it too. */
function labelled(key, input) {
  return h("label", { class: "stack field" }, h("span", { text: t(key) }), input);
}

/** After-sales claim: reason, what happened, a photo (uploaded first, then referenced by id). */
function claimForm(orderId) {
  const reason = h("select", { class: "claim-reason" }, ...REASONS.map((v) => h("option", { value: v, text: t(`claim_reason_${v}`) })));
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
      for (const input of [reason, description, photo, button]) (input.closest("label") || input).hidden = true;
      const count = photoCount(claim);
      status.append(count);
      if (claim.status === "pending") form.after(addPhotoForm(claim, count));
    } catch (err) {
      // Refused before anything was filed (e.g. the photo the policy requires): fix and resend.
      status.textContent = claimError(err);
      button.disabled = false;
    }
  } } }, labelled("claim_reason_label", reason), labelled("claim_text_label", description),
    labelled("claim_photo_label", photo), h("button", { type: "submit", text: t("claim_submit") }), status);
  return form;
}

/** A trial sample the host sent: a zero-price order of its batch, due for a 晒单. */
function sampleRow(sample) {
  const done = sample.status === "reviewed";
  return h("li", { class: "card order sample", dataset: { sample: String(sample.id) } },
    h("div", { class: "pin-head" },
      h("b", { class: "order-product", text: sample.product_name || `#${sample.id}` }),
      h("span", { class: "badge", text: t("sample_badge") }),
      h("span", { class: "price", text: yuan(0) })),
    h("p", { class: "muted", text: `${t("batch")} ${sample.batch_code || ""}` }),
    h("p", { class: "sample-due", text: t("sample_due", { time: localTime(sample.due_at) }) }),
    h("div", { class: "toolbar" }, done ? h("span", { class: "badge ok", text: t("ugc_posted") })
      : h("a", { class: "ugc-link button-link", href: `/ugc/new?sample=${sample.id}`, text: t("ugc_write") })));
}

async function load() {
  if (!requireLogin()) return;
  const [claim, pending] = await Promise.all([has("post", "/api/claims"),
    api("/api/nps/pending").catch(() => ({ order_ids: [] }))]);
  const koc = await api("/api/koc/me").catch(() => null);
  const posts = (koc && koc.posts) || [];
  const actions = { claim, surveys: new Set(pending.order_ids || []),
    posted: new Set(posts.filter((p) => p.order_id).map((p) => p.order_id)) };
  const samples = (koc && koc.samples) || [];
  $("#samples").replaceChildren(...samples.map(sampleRow));
  $("#samples-section").hidden = samples.length === 0;
  try {
    const data = await api("/api/orders?mine=1&limit=100");
    const orders = data.items || [];
    $("#orders").replaceChildren(...orders.map((o) => row(o, actions)));
    $("#empty").hidden = orders.length > 0 || samples.length > 0;
    document.body.dataset.ready = "1";
  } catch (err) {
    $("#empty").textContent = err.status === 404 ? t("not_available") : `${t("error")}: ${err.message}`;
    $("#empty").hidden = false;
  }
}

load();
