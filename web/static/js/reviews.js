// Reviews and NPS of the shop, per product, batch or session: the star distribution, the
// verified reviews (a page at a time) with the host's public reply, which the product's host
// writes or edits here; for staff, the NPS score and its weekly trend.
import { api } from "./api.js";
import { $, h, localTime } from "./dom.js";
import { serverText, t } from "./i18n.js";
import { mountShell } from "./shell.js";

const user = mountShell();
const STAFF = ["host", "assistant", "admin"];
const MAY_REPLY = ["host", "admin"];
let next = null;

function scope() {
  const params = new URLSearchParams(location.search);
  for (const kind of ["product", "batch", "session"]) {
    if (params.get(kind)) return { kind, id: params.get(kind) };
  }
  return null;
}

function listPath({ kind, id }) {
  const key = encodeURIComponent(id);
  return kind === "batch" ? `/api/batches/${key}/reviews` : kind === "session"
    ? `/api/sessions/${key}/reviews` : `/api/products/${key}/reviews`;
}

function replyForm(review, shown) {
  const text = h("textarea", { class: "reply-text", maxlength: "500", rows: "2", "aria-label": t("reviews_reply") });
  text.value = review.reply ? review.reply.text : "";
  const status = h("p", { class: "muted reply-status", role: "status", "aria-live": "polite" });
  return h("form", { class: "reply-form stack", on: { submit: async (e) => {
    e.preventDefault();
    const button = e.currentTarget.querySelector("button");
    button.disabled = true;
    try {
      const saved = await api(`/api/reviews/${review.id}/reply`, { method: "PUT", body: { text: text.value.trim() } });
      shown.textContent = `${t("reviews_host_reply")}: ${saved.text}`;
      shown.hidden = false;
      status.textContent = t("reviews_reply_saved");
      button.textContent = t("reviews_reply_edit");
    } catch (err) {
      status.textContent = serverText(err.code, err.message);
    } finally {
      button.disabled = false;
    }
  } } }, text, h("button", { type: "submit", text: review.reply ? t("reviews_reply_edit") : t("reviews_reply") }), status);
}

function item(review) {
  const shown = h("p", { class: "review-reply", text: review.reply ? `${t("reviews_host_reply")}: ${review.reply.text}` : "",
    hidden: !review.reply });
  const li = h("li", { class: "card review", dataset: { id: String(review.id) } },
    h("p", {}, h("b", { text: `${"★".repeat(Number(review.stars) || 0)} ` }), h("span", { text: review.buyer || "" }),
      h("span", { class: "muted", text: ` · ${t("verified_buyer")} · ${localTime(review.created_at)}` })),
    review.text ? h("p", { class: "review-text", text: review.text }) : null,
    (review.photos || []).length ? h("div", { class: "review-photos" }, review.photos.slice(0, 6).map((src) =>
      h("img", { src, alt: t("review_photo"), loading: "lazy", width: "72", height: "72" }))) : null,
    shown);
  if (user && MAY_REPLY.includes(user.role)) li.append(replyForm(review, shown));
  return li;
}

function summary(data) {
  const count = Number(data.count || 0);
  $("#average").textContent = count ? t("rating_avg", { avg: Number(data.average || 0).toFixed(1), n: count }) : t("no_reviews");
  $("#dist").replaceChildren(...[5, 4, 3, 2, 1].map((star) => {
    const n = Number((data.distribution || {})[String(star)] || 0);
    return h("li", {}, h("span", { text: t("stars_n", { n: star }) }),
      h("progress", { max: String(Math.max(1, count)), value: String(n), "aria-label": `${t("stars_n", { n: star })} ${n}` }),
      h("span", { text: String(n) }));
  }));
  $("#summary").hidden = false;
}

/** A host's (or admin's) own products, batches and sessions, one link each to their reviews. */
async function mine() {
  if (!user || !MAY_REPLY.includes(user.role)) return;
  const quietly = (p) => p.catch(() => []);
  const [products, batches, sessions] = await Promise.all([quietly(api("/api/products")),
    quietly(api("/api/batches")), quietly(api("/api/sessions"))]);
  const link = (kind, id, text) => h("li", {}, h("a", { href: `/reviews?${kind}=${encodeURIComponent(id)}`,
    text: `${t(`reviews_by_${kind}`)} · ${text}` }));
  const links = [
    ...products.map((p) => link("product", p.id, p.name)),
    ...batches.map((b) => link("batch", b.code, `${b.code} ${b.farm || ""}`.trim())),
    ...sessions.filter((x) => x.host_id === user.id || user.role === "admin").slice(0, 50)
      .map((x) => link("session", x.id, x.title)),
  ];
  $("#mine-links").replaceChildren(...links);
  $("#mine").hidden = links.length === 0;
}

async function nps(where) {
  if (!user || !STAFF.includes(user.role) || (where && where.kind === "product")) return;
  const query = where && where.kind === "session" ? `session_id=${encodeURIComponent(where.id)}` : "";
  try {
    let report = null;
    if (where && where.kind === "batch") {
      const batch = await api(`/api/batches/${encodeURIComponent(where.id)}/reviews?limit=1`, { auth: false });
      report = await api(`/api/nps/report?batch_id=${batch.batch.id}`);
    } else {
      report = await api(`/api/nps/report?${query}`);
    }
    $("#nps-score").textContent = report.score === null ? t("reviews_nps_none")
      : t("reviews_nps_score", { score: report.score, n: report.count, p: report.promoters, d: report.detractors });
    $("#nps-trend").replaceChildren(...report.trend.map((w) => h("li", {},
      h("span", { text: w.week }), h("span", { class: "nps-week", text: ` ${w.score} (${w.count})` }))));
    $("#nps").hidden = false;
  } catch (err) {
    $("#status").textContent = serverText(err.code, err.message);
  }
}

async function load(where, more = false) {
  try {
    const cursor = more && next ? `&cursor=${encodeURIComponent(next)}` : "";
    const data = await api(`${listPath(where)}?limit=20${cursor}`, { auth: false });
    if (!more) summary(data);
    const rows = (data.items || []).map(item);
    if (more) $("#reviews").append(...rows); else $("#reviews").replaceChildren(...rows);
    next = data.next;
    $("#more").hidden = !next;
    document.body.dataset.ready = "1";
  } catch (err) {
    $("#status").textContent = serverText(err.code, err.message);
  }
}

const where = scope();
$("#scope").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = $("#scope-id").value.trim();
  if (id) location.search = `?${$("#scope-kind").value}=${encodeURIComponent(id)}`;
});
$("#more").addEventListener("click", () => load(where, true));
if (where) {
  $("#scope-kind").value = where.kind;
  $("#scope-id").value = where.id;
  load(where);
  nps(where);
} else {
  // No scope chosen: the whole shop's NPS (a host: his own sessions') and where to look.
  nps(null).finally(() => { document.body.dataset.ready = "1"; });
}
mine();
