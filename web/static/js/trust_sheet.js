// The trust archive of the product being explained, opened from its card: the batch's QC
// reports, the trace link, the moments the product was explained live (a jump into the replay
// chapter once the replay exists) and verified reviews with photos and the star distribution.
// Everything comes from the public trust API; user text is always textContent.
import { api } from "./api.js";
import { h, localTime } from "./dom.js";
import { t } from "./i18n.js";
import { evidenceLines, productName, qcLine } from "./room_view.js";
import { badgeChip, postsSection } from "./ugc_view.js";

async function quietly(promise, fallback) {
  try {
    return await promise;
  } catch {
    return fallback;
  }
}

function qcSection(trace) {
  const reports = (trace && trace.qc_reports) || [];
  return h("section", { "aria-labelledby": "trust-qc" },
    h("h3", { id: "trust-qc", text: t("qc_reports") }),
    reports.length
      ? h("ul", { class: "qc-list" }, reports.slice(0, 20).map((r) => h("li", { class: "qc" },
        h("span", { text: qcLine(r) }),
        r.tested_at || r.created_at ? h("span", { class: "muted", text: ` · ${localTime(r.tested_at || r.created_at)}` }) : null)))
      : h("p", { class: "muted", text: t("no_qc") }));
}

function momentsSection(pin, replay, sessionId) {
  const chapters = (replay && Array.isArray(replay.chapters)) ? replay.chapters : [];
  const items = [];
  chapters.forEach((chapter, index) => {
    if (String(chapter.product_id) !== String(pin.product_id)) return;
    items.push(h("li", {}, h("a", { href: `/replays/${sessionId}?chapter=${index}`, text: t("jump_replay") }),
      chapter.start_s !== undefined ? h("span", { class: "muted", text: ` · ${formatOffset(chapter.start_s)}` }) : null));
  });
  if (!items.length && pin.pinned_at) {
    items.push(h("li", {}, h("span", { text: t("explained_at", { time: localTime(pin.pinned_at) }) }),
      h("span", { class: "muted", text: ` · ${t("replay_pending")}` })));
  }
  return h("section", { "aria-labelledby": "trust-moments" },
    h("h3", { id: "trust-moments", text: t("explained_moments") }),
    h("ul", { class: "moment-list" }, items));
}

function formatOffset(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function reviewsSection(archive) {
  const count = Number((archive && archive.count) || 0);
  const dist = (archive && archive.distribution) || {};
  const children = [h("h3", { id: "trust-reviews", text: t("reviews") })];
  if (!count) {
    children.push(h("p", { class: "muted", text: t("no_reviews") }));
  } else {
    const avg = Number(archive.average || 0).toFixed(1);
    children.push(h("p", { class: "rating", text: t("rating_avg", { avg, n: count }) }));
    children.push(h("ul", { class: "stars-dist" }, [5, 4, 3, 2, 1].map((star) => {
      const n = Number(dist[String(star)] || 0);
      return h("li", {}, h("span", { text: t("stars_n", { n: star }) }),
        h("progress", { max: String(Math.max(1, count)), value: String(n), "aria-label": `${t("stars_n", { n: star })} ${n}` }),
        h("span", { text: String(n) }));
    })));
    children.push(h("ul", { class: "review-list" }, (archive.reviews || []).slice(0, 20).map((r) => h("li", { class: "review" },
      h("p", {}, h("b", { text: `${"★".repeat(Number(r.stars) || 0)} ` }), h("span", { text: r.buyer || "" }), badgeChip(r.badge),
        r.verified_purchase ? h("span", { class: "muted", text: ` · ${t("verified_buyer")}` }) : null),
      r.text ? h("p", { text: r.text }) : null,
      (r.photos || []).length ? h("div", { class: "review-photos" }, r.photos.slice(0, 6).map((src) =>
        h("img", { src, alt: t("review_photo"), loading: "lazy", width: "72", height: "72" }))) : null,
      r.reply ? h("p", { class: "review-reply", text: `${t("reviews_host_reply")}: ${r.reply.text}` }) : null))));
  }
  return h("section", { "aria-labelledby": "trust-reviews" }, children);
}

/** Fill and open the sheet for a pin (after withEvidence: it may carry its batch). */
export async function openTrust(sheet, body, pin, { sessionId, sessionStatus } = {}) {
  const { batch, code } = evidenceLines(pin);
  body.replaceChildren(h("p", { class: "muted", text: t("loading") }));
  if (!sheet.open) sheet.showModal();
  const [trace, archive, replay, posts] = await Promise.all([
    code ? quietly(api(`/api/trace/${encodeURIComponent(code)}`, { auth: false }), null) : null,
    code ? quietly(api(`/api/batches/${encodeURIComponent(code)}/reviews`, { auth: false }), null)
      : quietly(api(`/api/products/${pin.product_id}/reviews`, { auth: false }), null),
    sessionStatus === "ended" ? quietly(api(`/api/sessions/${sessionId}/replay`, { auth: false }), null) : null,
    code ? quietly(api(`/api/batches/${encodeURIComponent(code)}/ugc`, { auth: false }), null)
      : quietly(api(`/api/products/${pin.product_id}/ugc`, { auth: false }), null),
  ]);
  body.replaceChildren(
    h("p", {}, h("b", { text: productName(pin) })),
    batch ? h("p", { class: "muted", text: batch }) : null,
    code ? h("p", {}, h("a", { href: `/trace/${encodeURIComponent(code)}`, text: t("trace_link") })) : null,
    qcSection(trace),
    momentsSection(pin, replay, sessionId),
    reviewsSection(archive),
    postsSection((posts && posts.items) || [], "trust-ugc", "h3"));
}
