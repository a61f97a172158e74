// Live room: anonymous visitors watch and read; signed-in neighbours comment, ask, upvote, buy.
// The video is only asked for while the session is live: a preview (not live yet) or an ended
// session never polls WHEP or HLS; the room starts playing when the host's stream starts.
import { api, goLogin, token } from "./api.js";
import { CommentList } from "./comments.js";
import { $, h, localTime, pathId, toast } from "./dom.js";
import * as ev from "./events.js";
import { t } from "./i18n.js";
import { LivePlayer } from "./player.js";
import { RoomConnection, replyError } from "./realtime.js";
import { questionRow, renderGroups, renderPin, withEvidence } from "./room_view.js";
import { refusalText, SalePanel } from "./sale_panel.js";
import { mountShell } from "./shell.js";
import { openTrust } from "./trust_sheet.js";

const sessionId = pathId();
const user = mountShell();
const video = $("#video");
const videoBox = $("#video-box");
const status = $("#video-status");
const notice = $("#notice");
const pinCard = $("#pin-card");
const comments = new CommentList($("#comment-list"));
const sale = new SalePanel($("#sale"), { card: pinCard, sheet: $("#buy-sheet") });
const questions = new Map();
// My own questions waiting for review: only I see them, marked 待审核 (kept across reloads).
const PENDING_STORE = `linli.pending.${sessionId}`;
const pending = new Map(loadPending());
let session = null;
let lastState = null;
let ended = false;
let pinKey = "";
let currentPin = null;

function say(text, ms = 4000) {
  notice.textContent = text;
  notice.hidden = !text;
  clearTimeout(say.timer);
  if (text && ms) say.timer = setTimeout(() => { notice.hidden = true; }, ms);
}

function errorText(error) {
  return refusalText(error || {});
}

// --- dialogs ---------------------------------------------------------------------------------
for (const dialog of document.querySelectorAll("dialog.sheet")) {
  for (const button of dialog.querySelectorAll("[data-close]")) button.addEventListener("click", () => dialog.close());
  // A tap on the dimmed backdrop (outside the sheet) closes it, as on a phone's share sheet.
  dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
}

// --- video -----------------------------------------------------------------------------------
const modeText = { connecting: "video_connecting", webrtc: "video_webrtc", hls: "video_hls", offline: "video_offline" };
const player = new LivePlayer(video, sessionId, {
  onMode: (mode) => {
    status.textContent = t(modeText[mode]);
    status.dataset.mode = mode;
    if (mode === "webrtc" || mode === "hls") $("#preview").hidden = true;
    // Autoplay starts muted: offer sound only once there is something to hear.
    $("#unmute").hidden = !((mode === "webrtc" || mode === "hls") && video.muted);
  },
});
let playing = false;

/** Start playback once, and only for a live session. */
function play() {
  if (playing || ended) return;
  playing = true;
  player.start();
}

function fitVideo() {
  // The box keeps its size whatever arrives; only how the picture sits in it changes.
  if (!video.videoWidth || !video.videoHeight) return;
  videoBox.dataset.orientation = video.videoHeight > video.videoWidth ? "portrait" : "landscape";
}
video.addEventListener("loadedmetadata", fitVideo);
video.addEventListener("resize", fitVideo);

$("#unmute").addEventListener("click", (e) => {
  video.muted = false;
  video.play().catch(() => {});
  e.currentTarget.hidden = true;
});

function showSession(data) {
  session = data;
  $("#title").textContent = data.title || "";
  document.title = `${data.title || ""} · ${t("brand")}`;
  if (data.status === "live") {
    play();
    return;
  }
  // Before the stream starts the room shows what is coming (a link shared the day before).
  $("#preview-status").textContent = t(`status_${data.status}`);
  $("#preview-when").textContent = localTime(data.scheduled_at);
  $("#preview-farm").textContent = [data.farm, data.origin].filter(Boolean).join(" · ");
  $("#preview-text").textContent = data.preview_text || "";
  $("#preview").hidden = false;
  status.textContent = t(data.status === "ended" ? "status_ended" : "status_scheduled");
  status.dataset.mode = "idle";
  if (data.status === "ended") {
    // Nothing will stream again: no retrying, and the replay one tap away.
    showEnded();
    status.textContent = t("status_ended");
    $("#preview-text").append(" ", h("a", { href: `/replays/${sessionId}`, text: t("nav_replays") }));
  }
}

function loadSession() {
  return api(`/api/sessions/${sessionId}`, { auth: false }).then(showSession)
    .catch(() => { $("#title").textContent = t("not_found"); });
}
loadSession();

/** The session is over: no 讲解中, nothing to buy (a hold already made may still be paid), the
 * replay one tap away. Reached from the page load, the room state or the session_ended event. */
function showEnded() {
  if (!ended) {
    ended = true;
    player.stop();
    $("#replay-link").href = `/replays/${sessionId}`;
    $("#ended").hidden = false;
    $("#title").dataset.status = "ended";
  }
  pinKey = "";
  currentPin = null;
  renderPin(pinCard, null);
  sale.sessionEnded = true;
  sale.render();
}

// --- hearts ----------------------------------------------------------------------------------
const hearts = $("#hearts");
function floatHearts(n) {
  for (let i = 0; i < Math.min(n, 6); i += 1) {
    if (hearts.childElementCount > 24) break;
    const heart = h("span", { class: "heart", text: "♥" });
    heart.style.setProperty("--dx", `${Math.round(Math.random() * 40 - 30)}px`);
    heart.addEventListener("animationend", () => heart.remove());
    hearts.append(heart);
  }
}

// --- realtime --------------------------------------------------------------------------------
let seqAtDrop = null;
let banned = false;
let caughtUp = 0;
let likesShown = null;
const conn = new RoomConnection(ev.NS_LIVE, sessionId, {
  onStatus: (state, _message, data) => {
    if (banned) return;
    if (state === "reconnecting") {
      seqAtDrop = conn.lastSeq;
      caughtUp = 0;
      say(t("reconnecting"), 0);
    } else if (state === "reconnected") {
      // Replayed events arrive right after the connect; count them, then say how many.
      setTimeout(() => say(t("reconnected", { n: caughtUp })), 1500);
    } else if (state === "refused") {
      // The server's words are bilingual: say it by its code, in the page's language.
      say(`${t("refused")}: ${errorText(data || {})}`, 0);
    }
  },
});

function countMissed(items) {
  if (seqAtDrop === null) return;
  for (const item of Array.isArray(items) ? items : [items]) {
    if (item && Number(item.seq) > seqAtDrop) caughtUp += 1;
  }
}

conn.on(ev.ON_HELLO, (hello) => {
  // A fresh start (not a resume) sends the recent comments and questions again: start clean.
  if (!hello.resumed) {
    comments.clear();
    questions.clear();
  }
  // The stream may have started between loading the page and this connection.
  if (session && session.status === "scheduled" && !playing) loadSession();
});
conn.on(ev.ON_COMMENTS, (batch) => {
  const list = Array.isArray(batch) ? batch : [];
  countMissed(list);
  comments.add(list);
});
conn.on(ev.ON_COMMENT_DELETED, (data) => {
  countMissed(data);
  comments.remove(data.id);
});
conn.on(ev.ON_STATE, (state) => applyState(state));
conn.on(ev.ON_RELOAD, () => {
  seqAtDrop = null;
  say(t("reload_needed"));
});
conn.on(ev.ON_QUESTIONS, (list) => {
  for (const q of Array.isArray(list) ? list : []) upsertQuestion(q, false);
  renderQuestions();
});
conn.on(ev.ON_QUESTION, (question) => {
  countMissed(question);
  if (question && question.id !== undefined) upsertQuestion(question);
});
conn.on(ev.ON_QUESTION_REJECTED, (data) => {
  if (!data) return;
  forgetPending(data.id);
  say(t("question_rejected", { text: data.text || "" }), 8000);
  renderQuestions();
});
conn.on(ev.ON_PINNED, (data) => {
  countMissed(data);
  showPin(data.pin);
});
conn.on(ev.ON_UNPINNED, (data) => {
  countMissed(data);
  showPin(null);
});
for (const name of [ev.ON_SALE_OPENED, ev.ON_SALE_CLOSED, ev.ON_GROUP_OUTCOME]) {
  conn.on(name, (data) => countMissed(data));
}
function untilText(info) {
  return info && info.until ? localTime(info.until) : t("forever");
}
conn.on(ev.ON_MUTED, (info) => say(t("muted_notice", { until: untilText(info) }), 0));
conn.on(ev.ON_UNMUTED, () => say(t("unmuted_notice")));
conn.on(ev.ON_BANNED, (info) => {
  banned = true;
  say(t("banned_notice", { until: untilText(info) }), 0);
});
conn.on(ev.ON_EVENT, (data) => {
  countMissed(data);
  // The host just started streaming: play now (a preview page was not asking for video).
  if (data && data.kind === ev.KIND_STREAM_STARTED) {
    if (session) session.status = "live";
    $("#preview").hidden = true;
    if (playing) player.kick();
    else play();
  }
});
conn.on(ev.ON_SESSION_ENDED, (data) => {
  countMissed(data);
  say(t("session_ended"), 0);
  showEnded();
});

async function showPin(pinned) {
  if (ended) pinned = null;
  const key = pinned ? String(pinned.id ?? pinned.product_id) : "";
  if (key === pinKey) return;
  pinKey = key;
  currentPin = pinned;
  renderPin(pinCard, pinned);
  $("#open-trust").hidden = !pinned;
  sale.update(sale.lastSales, pinned ? pinned.product_id : null);
  const full = await withEvidence(pinned);
  if (pinKey === key && full !== pinned) {
    currentPin = full;
    renderPin(pinCard, full);
    sale.renderCard();
  }
}

/** Group-buys of the sale on screen (each sale has its own per-community groups). */
function renderSaleGroups() {
  const saleId = sale.currentSaleId();
  const groups = ((lastState && lastState.groups) || []).filter((g) => saleId === null || g.sale_id === saleId);
  sale.groups = groups;
  const mine = sale.sale ? sale.sale.your_community_id ?? null : null;
  renderGroups($("#groups"), $("#group-list"), groups, { mine, onJoin: () => sale.open() });
  sale.renderCard();
}
sale.onChange = renderSaleGroups;

function applyState(state) {
  if (!state || typeof state !== "object") return;
  lastState = state;
  $("#viewers").textContent = String(state.viewers ?? 0);
  const likes = Number(state.likes ?? 0);
  if (likesShown !== null && likes > likesShown) floatHearts(likes - likesShown);
  likesShown = likes;
  $("#likes").textContent = String(likes);
  if (state.status === "ended") showEnded();
  showPin(state.pinned);
  sale.lastSales = state.sales;
  sale.update(state.sales, state.pinned ? state.pinned.product_id : null);
  if (state.question_votes) {
    for (const [id, votes] of Object.entries(state.question_votes)) {
      const q = questions.get(String(id));
      if (q) q.votes = Number(votes);
    }
  }
  const pinnedQ = state.pinned_question === null || state.pinned_question === undefined ? "" : String(state.pinned_question);
  for (const q of questions.values()) q.pinned = String(q.id) === pinnedQ;
  renderQuestions();
}

// --- questions -------------------------------------------------------------------------------
function loadPending() {
  try {
    const raw = JSON.parse(sessionStorage.getItem(PENDING_STORE) || "[]");
    return Array.isArray(raw) ? raw.slice(-20).map((q) => [String(q.id), q]) : [];
  } catch {
    return [];
  }
}

function savePending() {
  sessionStorage.setItem(PENDING_STORE, JSON.stringify([...pending.values()].slice(-20)));
}

function forgetPending(id) {
  if (pending.delete(String(id))) savePending();
}

function upsertQuestion(question, render = true) {
  const key = String(question.id);
  if (question.status && question.status !== "approved") questions.delete(key);
  else questions.set(key, { ...(questions.get(key) || {}), ...question });
  // Approved (now public), rejected or merged: no longer waiting.
  if (question.status && question.status !== "pending") forgetPending(key);
  if (render) renderQuestions();
}

function renderQuestions() {
  const list = [...questions.values()].sort((a, b) =>
    Number(Boolean(b.pinned)) - Number(Boolean(a.pinned)) || Number(b.votes ?? 0) - Number(a.votes ?? 0) || Number(a.id) - Number(b.id));
  const fragment = document.createDocumentFragment();
  for (const q of pending.values()) {
    if (!questions.has(String(q.id))) fragment.append(questionRow(q, { pending: true }));
  }
  for (const q of list.slice(0, 100)) {
    const vote = document.createElement("button");
    vote.type = "button";
    vote.className = "chip upvote";
    vote.textContent = t("upvote");
    vote.addEventListener("click", () => upvote(q.id));
    fragment.append(questionRow(q, { extra: vote }));
  }
  $("#question-list").replaceChildren(fragment);
}
renderQuestions();

async function upvote(id) {
  if (!token()) return goLogin();
  const error = replyError(await conn.request(ev.SEND_UPVOTE, { question_id: id }));
  if (error) toast(errorText(error), "error");
}

// --- sending ---------------------------------------------------------------------------------
if (!user) {
  $("#login-hint").hidden = false;
  $("#login-hint-link").href = `/login?next=${encodeURIComponent(location.pathname)}`;
}

async function send(event, input) {
  if (!token()) return goLogin();
  const text = input.value.trim();
  if (!text) return null;
  const reply = await conn.request(event, { text });
  const error = replyError(reply);
  if (error) {
    toast(`${t("refused")}: ${errorText(error)}`, "error");
    return null;
  }
  input.value = "";
  return { reply, text };
}

$("#comment-form").addEventListener("submit", (e) => {
  e.preventDefault();
  send(ev.SEND_COMMENT, $("#comment-input"));
});
$("#ask-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const sent = await send(ev.SEND_QUESTION, $("#ask-input"));
  if (!sent) return;
  const { reply, text } = sent;
  if (reply && reply.question_id !== undefined && reply.status === "pending") {
    pending.set(String(reply.question_id), { id: reply.question_id, text, status: "pending",
      user: user ? { id: user.id, name: user.display_name || user.username } : {} });
    savePending();
    renderQuestions();
  }
  toast(t("question_sent"));
});
$("#like").addEventListener("click", () => {
  if (!token()) return goLogin();
  floatHearts(1);
  likesShown = (likesShown ?? 0) + 1;
  $("#likes").textContent = String(likesShown);
  conn.socket.emit(ev.SEND_LIKE, { count: 1 });
});
for (const input of [$("#comment-input"), $("#ask-input")]) {
  input.addEventListener("focus", () => { if (!token()) goLogin(); });
}

// --- share and trust sheets ------------------------------------------------------------------
$("#share").addEventListener("click", async () => {
  const sheet = $("#share-sheet");
  // The server's public address (what the QR code holds), else the one this page came from.
  // Signed in, the link and poster carry her share code (?ref=): a neighbour who buys through
  // it is credited to her.
  const card = await api(`/api/sessions/${sessionId}/share`).catch(() => null);
  $("#share-url").value = (card && card.url) || `${location.origin}/live/${sessionId}`;
  $("#poster-title").textContent = (session && session.title) || "";
  $("#poster-farm").textContent = session ? [session.farm, session.origin].filter(Boolean).join(" · ") : "";
  // Images are made when the sheet opens: the room itself loads none it does not show.
  const cover = session && (session.cover_url || session.cover);
  $("#poster-cover").replaceChildren(...(cover ? [h("img", { class: "poster-cover", src: cover, alt: "" })] : []));
  $("#poster-qr").replaceChildren(h("img", { class: "poster-qr", src: (card && card.qr_svg) || `/api/sessions/${sessionId}/qr.svg`,
    alt: t("share_qr_alt"), width: "180", height: "180" }));
  $("#native-share").hidden = !navigator.share;
  sheet.showModal();
});
$("#copy-link").addEventListener("click", async () => {
  const input = $("#share-url");
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    // No clipboard permission (an in-app browser): select it for a long-press copy instead.
    input.select();
    document.execCommand?.("copy");
  }
  toast(t("link_copied"));
});
$("#native-share").addEventListener("click", () => {
  navigator.share?.({ title: (session && session.title) || t("brand"), url: $("#share-url").value }).catch(() => {});
});
$("#open-trust").addEventListener("click", () => {
  if (currentPin) openTrust($("#trust-sheet"), $("#trust-body"), currentPin, { sessionId, sessionStatus: session && session.status });
});

// Tests and debugging read this; it holds no secrets.
window.linliLive = { conn, comments, sale, player, get playing() { return playing; } };
