// Live room: anonymous visitors watch and read; signed-in neighbours comment, ask, upvote, buy.
import { api, goLogin, token } from "./api.js";
import { CommentList } from "./comments.js";
import { $, h, localTime, pathId, toast } from "./dom.js";
import * as ev from "./events.js";
import { t } from "./i18n.js";
import { LivePlayer } from "./player.js";
import { RoomConnection, replyError } from "./realtime.js";
import { questionRow, renderGroups, renderPin, withEvidence } from "./room_view.js";
import { SalePanel } from "./sale_panel.js";
import { mountShell } from "./shell.js";

const sessionId = pathId();
const user = mountShell();
const video = $("#video");
const status = $("#video-status");
const notice = $("#notice");
const comments = new CommentList($("#comment-list"));
const sale = new SalePanel($("#sale"));
const questions = new Map();
let lastState = null;
let ended = false;
let pinKey = "";

function say(text, ms = 4000) {
  notice.textContent = text;
  notice.hidden = !text;
  clearTimeout(say.timer);
  if (text && ms) say.timer = setTimeout(() => { notice.hidden = true; }, ms);
}

// --- video -----------------------------------------------------------------------------------
const modeText = { connecting: "video_connecting", webrtc: "video_webrtc", hls: "video_hls", offline: "video_offline" };
const player = new LivePlayer(video, sessionId, {
  onMode: (mode) => {
    status.textContent = t(modeText[mode]);
    status.dataset.mode = mode;
    if (mode === "webrtc" || mode === "hls") $("#preview").hidden = true;
  },
});
player.start();
$("#unmute").addEventListener("click", (e) => {
  video.muted = false;
  video.play().catch(() => {});
  e.currentTarget.hidden = true;
});

api(`/api/sessions/${sessionId}`, { auth: false }).then((session) => {
  $("#title").textContent = session.title || "";
  document.title = `${session.title || ""} · 邻里 Linli`;
  // Before the stream starts the room shows what is coming (a link shared the day before).
  if (session.status !== "live") {
    $("#preview-status").textContent = t(`status_${session.status}`);
    $("#preview-when").textContent = localTime(session.scheduled_at);
    $("#preview-farm").textContent = [session.farm, session.origin].filter(Boolean).join(" · ");
    $("#preview-text").textContent = session.preview_text || "";
    $("#preview").hidden = false;
  }
  if (session.status === "ended") {
    // Nothing will stream again: stop retrying and point to the replay.
    showEnded();
    $("#video-status").textContent = t("status_ended");
    $("#preview-text").append(" ", h("a", { href: `/replays/${sessionId}`, text: t("nav_replays") }));
  }
}).catch(() => { $("#title").textContent = t("not_found"); });

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
  renderPin($("#pin-card"), null);
  sale.sessionEnded = true;
  sale.render();
}

// --- realtime --------------------------------------------------------------------------------
let seqAtDrop = null;
let banned = false;
let caughtUp = 0;
const conn = new RoomConnection(ev.NS_LIVE, sessionId, {
  onStatus: (state, message) => {
    if (banned) return;
    if (state === "reconnecting") {
      seqAtDrop = conn.lastSeq;
      caughtUp = 0;
      say(t("reconnecting"), 0);
    } else if (state === "reconnected") {
      // Replayed events arrive right after the connect; count them, then say how many.
      setTimeout(() => say(t("reconnected", { n: caughtUp })), 1500);
    } else if (state === "refused") {
      say(`${t("refused")}: ${message || ""}`, 0);
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
conn.on(ev.ON_PINNED, (data) => {
  countMissed(data);
  showPin(data.pin);
});
conn.on(ev.ON_UNPINNED, (data) => {
  countMissed(data);
  renderPin($("#pin-card"), null);
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
  // The host just started streaming: play now rather than at the next back-off retry.
  if (data && data.kind === ev.KIND_STREAM_STARTED) player.kick();
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
  renderPin($("#pin-card"), pinned);
  const full = await withEvidence(pinned);
  if (pinKey === key && full !== pinned) renderPin($("#pin-card"), full);
}

/** Group-buys of the sale on screen (each sale has its own per-community groups). */
function renderSaleGroups() {
  const saleId = sale.currentSaleId();
  const groups = ((lastState && lastState.groups) || []).filter((g) => saleId === null || g.sale_id === saleId);
  renderGroups($("#groups"), $("#group-list"), groups);
}
sale.onChange = renderSaleGroups;

function applyState(state) {
  if (!state || typeof state !== "object") return;
  lastState = state;
  $("#viewers").textContent = String(state.viewers ?? 0);
  $("#likes").textContent = String(state.likes ?? 0);
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
function upsertQuestion(question, render = true) {
  const key = String(question.id);
  if (question.status && question.status !== "approved") questions.delete(key);
  else questions.set(key, { ...(questions.get(key) || {}), ...question });
  if (render) renderQuestions();
}

function renderQuestions() {
  const list = [...questions.values()].sort((a, b) =>
    Number(Boolean(b.pinned)) - Number(Boolean(a.pinned)) || Number(b.votes ?? 0) - Number(a.votes ?? 0) || Number(a.id) - Number(b.id));
  const fragment = document.createDocumentFragment();
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

async function upvote(id) {
  if (!token()) return goLogin();
  const error = replyError(await conn.request(ev.SEND_UPVOTE, { question_id: id }));
  if (error) toast(error.message || error.code, "error");
}

// --- sending ---------------------------------------------------------------------------------
if (!user) {
  $("#login-hint").hidden = false;
  $("#login-hint-link").href = `/login?next=${encodeURIComponent(location.pathname)}`;
}

async function send(event, input, okText) {
  if (!token()) return goLogin();
  const text = input.value.trim();
  if (!text) return;
  const error = replyError(await conn.request(event, { text }));
  if (error) {
    toast(`${t("refused")}: ${error.message || error.code}`, "error");
    return;
  }
  input.value = "";
  if (okText) toast(okText);
}

$("#comment-form").addEventListener("submit", (e) => {
  e.preventDefault();
  send(ev.SEND_COMMENT, $("#comment-input"));
});
$("#ask-form").addEventListener("submit", (e) => {
  e.preventDefault();
  send(ev.SEND_QUESTION, $("#ask-input"), t("question_sent"));
});
$("#like").addEventListener("click", () => {
  if (!token()) return goLogin();
  conn.socket.emit(ev.SEND_LIKE, { count: 1 });
});
for (const input of [$("#comment-input"), $("#ask-input")]) {
  input.addEventListener("focus", () => { if (!token()) goLogin(); });
}

// Tests and debugging read this; it holds no secrets.
window.linliLive = { conn, comments, sale, player };
