// Replay player: HLS VOD with a chapter per product. "讲解回放" seeks to the moment the host
// explained it; each chapter carries the product, its batch and QC report and the Q&A about it.
import { api } from "./api.js";
import { $, clock, h, pathId, yuan } from "./dom.js";
import { t } from "./i18n.js";
import { attachHls } from "./player.js";
import { evidenceLines, questionRow, withEvidence } from "./room_view.js";
import { mountShell } from "./shell.js";

mountShell();
const sessionId = pathId();
const video = $("#video");
let attached = false;
let chapters = [];

api(`/api/sessions/${sessionId}`, { auth: false }).then((s) => {
  $("#title").textContent = s.title || "";
  document.title = `${s.title || ""} · 回放 · 邻里 Linli`;
}).catch(() => {});

function chapterName(chapter) {
  return chapter.name || chapter.product_name || (chapter.product && chapter.product.name) || "";
}

/** Q&A of the session, grouped by the pin that was live when each question was asked; the
 * whole list is kept too, so a question asked between products (often the one the host pinned
 * and answered for everyone) still has a place on the page. */
async function questionsByPin() {
  const byPin = new Map();
  try {
    const all = await api(`/api/sessions/${sessionId}/questions`, { auth: false });
    byPin.all = all;
    for (const q of all) {
      const key = String(q.pin_id ?? `p${q.product_id}`);
      if (!byPin.has(key)) byPin.set(key, []);
      byPin.get(key).push(q);
    }
  } catch { /* chapters still work without Q&A */ }
  return byPin;
}

/** Questions no chapter shows, pinned and answered first. */
function renderLooseQuestions(byPin, shown) {
  const loose = (byPin.all || []).filter((q) => !shown.has(String(q.id)))
    .sort((a, b) => Number(Boolean(b.pinned)) - Number(Boolean(a.pinned))
      || Number(Boolean(b.answer)) - Number(Boolean(a.answer)) || (b.votes || 0) - (a.votes || 0) || a.id - b.id);
  $("#qa-list").replaceChildren(...loose.slice(0, 100).map((q) => questionRow(q)));
  $("#qa").hidden = loose.length === 0;
}

function jump(index) {
  const chapter = chapters[index];
  if (!chapter) return;
  video.currentTime = Number(chapter.start_s || 0) + 0.05;
  video.play().catch(() => {});
  highlight();
}

function highlight() {
  const now = video.currentTime;
  for (const li of $("#chapters").children) {
    const c = chapters[Number(li.dataset.index)];
    const current = c && now >= Number(c.start_s) && now < Number(c.end_s ?? Infinity);
    li.classList.toggle("current", Boolean(current));
  }
  const active = chapters.find((c) => now >= Number(c.start_s) && now < Number(c.end_s ?? Infinity));
  document.body.dataset.chapterProduct = active ? String(active.product_id ?? "") : "";
}

function renderChapters(byPin = new Map()) {
  const shown = new Set();
  const items = chapters.map((chapter, index) => {
    const lines = evidenceLines(chapter);
    const price = chapter.price_fen ?? (chapter.product && chapter.product.price_fen);
    const questions = chapter.questions || byPin.get(String(chapter.pin_id)) || byPin.get(`p${chapter.product_id}`) || [];
    for (const q of questions.slice(0, 50)) shown.add(String(q.id));
    return h("li", { class: "card chapter", dataset: { index: String(index), productId: String(chapter.product_id ?? "") } },
      h("div", { class: "pin-head" },
        h("b", { class: "chapter-name", text: chapterName(chapter) }),
        price !== undefined && price !== null ? h("span", { class: "price", text: yuan(price) }) : null,
        h("span", { class: "muted", text: `${clock(chapter.start_s || 0)}–${chapter.end_s !== undefined && chapter.end_s !== null ? clock(chapter.end_s) : ""}` })),
      lines.code ? h("p", { class: "muted chapter-batch" }, h("a", { href: `/trace/${encodeURIComponent(lines.code)}`, text: lines.batch })) : null,
      lines.qc ? h("p", { class: "qc chapter-qc", text: `${t("qc_report")}: ${lines.qc}` }) : null,
      h("div", { class: "toolbar" },
        h("button", { type: "button", class: "primary jump", text: t("jump_chapter"), on: { click: () => jump(index) } }),
        chapter.clip_url ? h("a", { href: chapter.clip_url, class: "clip", text: t("chapter_clip") }) : null),
      questions.length ? h("div", { class: "chapter-qa" }, h("p", { class: "muted", text: t("qa_about") }),
        h("ul", { class: "questions" }, ...questions.slice(0, 50).map((q) => questionRow(q)))) : null);
  });
  $("#chapters").replaceChildren(...items);
  renderLooseQuestions(byPin, shown);
}

async function load() {
  let replay;
  try {
    replay = await api(`/api/sessions/${sessionId}/replay`, { auth: false });
  } catch (err) {
    $("#missing").textContent = err.status === 404 ? t("replay_missing") : `${t("error")}: ${err.message}`;
    $("#missing").hidden = false;
    return;
  }
  if (replay.poster) video.poster = replay.poster;
  chapters = Array.isArray(replay.chapters) ? replay.chapters : [];
  renderChapters();
  // Batch, QC and Q&A arrive after the chapters themselves: show the list first. The Q&A is
  // fetched even with no chapter (a session that showed no product still had questions).
  const [byPin, enriched] = await Promise.all([questionsByPin(), Promise.all(chapters.map((c) => withEvidence(c)))]);
  chapters = enriched;
  renderChapters(byPin);
  if (chapters.length) highlight();
  const status = replay.status || "ready";
  if (status === "failed" || status === "empty" || status === "none") {
    $("#missing").textContent = t(status === "failed" ? "replay_failed" : "replay_missing");
    $("#missing").hidden = false;
    return;
  }
  if (status === "recording" || replay.live) {
    // Still live: the replay is built when the session ends.
    $("#missing").replaceChildren(t("replay_while_live"), " ",
      h("a", { href: `/live/${sessionId}`, text: t("watch") }));
    $("#missing").hidden = false;
    setTimeout(load, 5000);
    return;
  }
  $("#missing").hidden = true;
  if (status !== "ready") {
    // pending / processing / recording: show progress and ask again shortly.
    const percent = Math.round(Number(replay.percent ?? replay.progress ?? 0));
    $("#processing").hidden = false;
    $("#processing-text").textContent = t("processing", { p: percent });
    $("#processing-bar").value = percent;
    setTimeout(load, 2000);
    return;
  }
  $("#processing").hidden = true;
  if (!attached) {
    attached = true;
    await attachHls(video, replay.hls || `/replays/${sessionId}/index.m3u8`, { live: false });
    const query = new URLSearchParams(location.search);
    // ?pin= (an after-sales claim's stream moment) names the chapter of that pin.
    const pin = Number(query.get("pin"));
    const byPin = pin ? chapters.findIndex((c) => c.pin_id === pin) : -1;
    const wanted = byPin >= 0 ? byPin : Number(query.get("chapter"));
    if (Number.isInteger(wanted) && chapters[wanted]) {
      video.addEventListener("loadedmetadata", () => jump(wanted), { once: true });
    }
  }
}

video.addEventListener("timeupdate", highlight);
window.linliReplay = { jump, video };
load();
