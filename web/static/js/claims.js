// The after-sales queue: each claim with its due time (local) and overdue flag, the buyer's
// photos (private: fetched with the token into blob: URLs), links to the batch's trace and the
// replay chapter of the stream moment, and for assistants and admins the decision: approve with
// the payout (the policy's 坏一赔十 by default), reject or reship with a reason. A host sees the
// claims on his own sessions, without the decision controls.
import { api, requireLogin, token } from "./api.js";
import { $, h, localTime, toFen, yuan } from "./dom.js";
import { hasKey, serverText, t } from "./i18n.js";
import { mountShell } from "./shell.js";

const user = mountShell();
const DECIDERS = ["assistant", "admin"];
const photoUrls = new Map(); // /api/uploads/... → blob: URL, fetched once per page

function label(key, fallback) {
  return hasKey(key) ? t(key) : String(fallback || "");
}

async function blobUrl(url) {
  if (!photoUrls.has(url)) {
    photoUrls.set(url, fetch(url, { headers: { Authorization: `Bearer ${token()}` } })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((blob) => URL.createObjectURL(blob)));
  }
  return photoUrls.get(url);
}

function openPhoto(src, alt) {
  const img = $("#viewer-img");
  img.src = src;
  img.alt = alt;
  $("#viewer").showModal();
}

function photos(claim) {
  const list = h("div", { class: "claim-photos" });
  (claim.photo_urls || []).forEach((url, i) => {
    const alt = t("claims_photo_n", { id: claim.id, n: i + 1 });
    const img = h("img", { class: "claim-thumb", alt, width: "96", height: "96" });
    const button = h("button", { type: "button", class: "photo-open", "aria-label": alt,
      on: { click: () => { if (img.src) openPhoto(img.src, alt); } } }, img);
    blobUrl(url).then((src) => { img.src = src; }).catch(() => { button.disabled = true; });
    list.append(button);
  });
  return list;
}

function money(claim) {
  const state = (status) => (status ? t(`claims_money_${status}`) : t("claims_money_none"));
  if (claim.status !== "approved") return null;
  return h("p", { class: "claim-money" },
    h("span", { class: "refund-line", dataset: { state: claim.refund_status || "" },
      text: `${t("claims_refund")} ${yuan(claim.refund_fen)} · ${state(claim.refund_status)}` }),
    claim.compensation_fen > 0 ? h("span", { class: "compensation-line", dataset: { state: claim.compensation_status || "" },
      text: ` · ${t("claims_compensation")} ${yuan(claim.compensation_fen)} · ${state(claim.compensation_status)}${waiting(claim)}` }) : null);
}

/** Why a compensation waits (待领取): the buyer must link an account; she is shown how. */
function waiting(claim) {
  if (claim.compensation_status !== "awaiting_payee") return "";
  const key = `claims_wait_${claim.compensation_waiting_reason}`;
  return hasKey(key) ? ` · ${t(key)}` : "";
}

function links(claim) {
  const moment = claim.stream_moment || {};
  return h("p", { class: "claim-links" },
    h("span", { class: "muted", text: `${t("order_no")} ${claim.order_id}` }),
    claim.trace_url ? h("a", { class: "trace-link", href: claim.trace_url, text: `${t("claims_batch")} ${claim.batch_code}` }) : null,
    h("a", { class: "replay-link", href: `${claim.replay_url}${moment.pin_id ? `?pin=${moment.pin_id}` : ""}`,
      text: moment.pinned_at ? `${t("claims_moment")} ${localTime(moment.pinned_at)}` : t("claims_moment") }));
}

function decisionForm(claim, li) {
  const payout = h("input", { class: "payout", inputmode: "decimal", value: (claim.payout_fen / 100).toFixed(2), "aria-describedby": `hint-${claim.id}` });
  const note = h("textarea", { class: "decision-note", maxlength: "500", rows: "2" });
  const status = h("p", { class: "decision-status", role: "status", "aria-live": "polite" });
  const send = async (path, body, button) => {
    for (const b of li.querySelectorAll(".decision button")) b.disabled = true;
    try {
      const decided = await api(`/api/claims/${claim.id}/${path}`, { method: "POST", body });
      // The decision answers the claim alone; names, links and photos stay from the queue row.
      li.replaceWith(card({ ...claim, ...decided }));
    } catch (err) {
      status.textContent = serverText(err.code, err.message);
      for (const b of li.querySelectorAll(".decision button")) b.disabled = false;
      button.focus();
    }
  };
  const needReason = (button, path) => {
    if (!note.value.trim()) {
      status.textContent = t("claims_reason_required");
      note.focus();
      return;
    }
    send(path, { note: note.value.trim() }, button);
  };
  return h("form", { class: "decision stack", on: { submit: (e) => e.preventDefault() } },
    h("label", {}, h("span", { text: t("claims_payout") }), payout),
    h("p", { class: "muted", id: `hint-${claim.id}`,
      text: t("claims_payout_hint", { unit: yuan(claim.unit_price_fen), qty: claim.bad_qty, m: claim.multiplier }) }),
    h("label", {}, h("span", { text: t("claims_note") }), note),
    h("div", { class: "row wrap" },
      h("button", { type: "button", class: "primary approve", text: t("claims_approve"), on: { click: (e) => {
        const fen = toFen(payout.value);
        if (!fen) { status.textContent = t("claims_payout_invalid"); payout.focus(); return; }
        send("approve", { payout_fen: fen, note: note.value.trim() }, e.currentTarget);
      } } }),
      h("button", { type: "button", class: "reship", text: t("claims_reship"), on: { click: (e) => needReason(e.currentTarget, "reship") } }),
      h("button", { type: "button", class: "danger reject", text: t("claims_reject"), on: { click: (e) => needReason(e.currentTarget, "reject") } })),
    status);
}

function card(claim) {
  const overdue = claim.overdue;
  const li = h("li", { class: `card claim${overdue ? " is-overdue" : ""}`, dataset: { id: String(claim.id), status: claim.status } },
    h("div", { class: "pin-head" },
      h("b", { class: "claim-product", text: claim.product_name }),
      h("span", { class: "badge claim-state", text: label(`claims_status_${claim.status}`, claim.status) }),
      overdue ? h("span", { class: "badge overdue", text: t("claims_overdue") }) : null),
    h("p", { class: "claim-who", text: `${claim.buyer_name} · ${label(`claim_reason_${claim.reason}`, claim.reason)} · ×${claim.bad_qty}` }),
    claim.description ? h("p", { class: "claim-description", text: claim.description }) : null,
    h("p", { class: "claim-due" }, h("span", { class: "muted", text: `${t("claims_due")} ` }),
      h("time", { datetime: claim.due_at, text: localTime(claim.due_at) })),
    (claim.photo_urls || []).length ? photos(claim) : null,
    links(claim),
    claim.decision_note ? h("p", { class: "claim-note", text: `${t("claims_note")}: ${claim.decision_note}` }) : null,
    money(claim));
  if (claim.status === "pending" && user && DECIDERS.includes(user.role)) li.append(decisionForm(claim, li));
  return li;
}

let asked = 0; // a slower answer for an earlier filter must not replace a newer one

async function load() {
  const status = document.querySelector("#filters input:checked").value;
  const mine = ++asked;
  try {
    const rows = await api(`/api/claims?status=${status}`);
    if (mine !== asked) return;
    $("#claims").replaceChildren(...rows.map(card));
    $("#empty").hidden = rows.length > 0;
    $("#summary").textContent = t("claims_count", { n: rows.length });
    document.body.dataset.ready = "1";
  } catch (err) {
    $("#summary").textContent = serverText(err.code, err.message);
  }
}

if (requireLogin()) {
  for (const input of document.querySelectorAll("#filters input")) input.addEventListener("change", load);
  load();
}
