// Replay player: HLS VOD with a chapter per product. "讲解回放" seeks to the moment the host
// explained it; each chapter carries the product, its batch and QC report and the Q&A about it.
import { api } from "./api.js";
import { $, clock, h, pathId, yuan } from "./dom.js";
import { t } from "./i18n.js";
import { attachHls } from "./player.js";
import { questionRow } from "./room_view.js";
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
  return chapter.product_name || (chapter.product && chapter.product.name) || chapter.title || "";
}

function qcText(chapter) {
  const qc = chapter.qc || chapter.qc_reports || (chapter.batch && chapter.batch.qc) || [];
  const list = Array.isArray(qc) ? qc : [qc];
  return list.map((r) => (typeof r === "string" ? r : [r.title || r.kind, r.result || r.summary].filter(Boolean).join(" "))).filter(Boolean).join(" · ");
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

function renderChapters() {
  const items = chapters.map((chapter, index) => {
    const batch = chapter.batch || null;
    const code = (batch && batch.code) || chapter.batch_code;
    const price = chapter.price_fen ?? (chapter.product && chapter.product.price_fen);
    const questions = Array.isArray(chapter.questions) ? chapter.questions : chapter.qa || [];
    return h("li", { class: "card chapter", dataset: { index: String(index), productId: String(chapter.product_id ?? "") } },
      h("div", { class: "pin-head" },
        h("b", { class: "chapter-name", text: chapterName(chapter) }),
        price !== undefined && price !== null ? h("span", { class: "price", text: yuan(price) }) : null,
        h("span", { class: "muted", text: `${clock(chapter.start_s || 0)}–${chapter.end_s !== undefined && chapter.end_s !== null ? clock(chapter.end_s) : ""}` })),
      code ? h("p", { class: "muted" }, h("a", { href: `/trace/${encodeURIComponent(code)}`, text: `${t("batch")} ${code}` })) : null,
      qcText(chapter) ? h("p", { class: "qc", text: `${t("qc_report")}: ${qcText(chapter)}` }) : null,
      h("div", { class: "toolbar" },
        h("button", { type: "button", class: "primary jump", text: t("jump_chapter"), on: { click: () => jump(index) } }),
        chapter.clip_url ? h("a", { href: chapter.clip_url, class: "clip", text: "▶ clip" }) : null),
      questions.length ? h("div", {}, h("p", { class: "muted", text: t("qa_about") }),
        h("ul", { class: "questions" }, ...questions.slice(0, 50).map((q) => questionRow(q)))) : null);
  });
  $("#chapters").replaceChildren(...items);
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
  const status = replay.status || "ready";
  if (status === "failed") {
    $("#missing").textContent = t("replay_failed");
    $("#missing").hidden = false;
    return;
  }
  if (status !== "ready") {
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
    await attachHls(video, replay.url || replay.playlist || `/replays/${sessionId}/index.m3u8`, { live: false });
    const wanted = Number(new URLSearchParams(location.search).get("chapter"));
    if (Number.isInteger(wanted) && chapters[wanted]) {
      video.addEventListener("loadedmetadata", () => jump(wanted), { once: true });
    }
  }
}

video.addEventListener("timeupdate", highlight);
window.linliReplay = { jump, video };
load();
