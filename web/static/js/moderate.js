// Moderation console: the pending-question queue (approve / reject / merge / answer / pin), the
// comment stream with delete / mute / ban, banned words and slow mode. Staff-only namespace
// /moderation for actions; the viewers' /live stream for comments as everyone sees them.
import { api, currentUser, requireLogin } from "./api.js";
import { CommentList } from "./comments.js";
import { $, h, localTime, pathId, toast } from "./dom.js";
import * as ev from "./events.js";
import { t } from "./i18n.js";
import { RoomConnection, replyError } from "./realtime.js";
import { questionRow } from "./room_view.js";
import { mountShell } from "./shell.js";

const sessionId = pathId();
mountShell();
const questions = new Map();

function fail(text) {
  $("#mod-error").textContent = text || "";
  $("#mod-error").hidden = !text;
}

const STAFF = new Set(["admin", "host", "assistant"]);

/** Nothing of the console for someone who may not use it: one plain sentence instead. */
function noAccess() {
  $("#mod-console").remove();
  fail(t("mod_no_access"));
}

async function main() {
  if (!requireLogin()) return;
  if (!STAFF.has((currentUser() || {}).role)) { noAccess(); return; }
  api(`/api/sessions/${sessionId}`).then((s) => { $("#title").textContent = s.title || ""; }).catch(() => {});
  const mod = new RoomConnection(ev.NS_MOD, sessionId, {
    onStatus: (state, _message, error) => {
      if (state !== "refused") { fail(""); return; }
      if (error && error.code === "not_found") fail(t("session_not_found"));
      else if (document.getElementById("mod-console")) noAccess();
    },
  });
  const live = new RoomConnection(ev.NS_LIVE, sessionId);

  async function act(event, payload, okText) {
    const error = replyError(await mod.request(event, payload));
    if (error) toast(`${t("refused")}: ${error.message || error.code}`, "error");
    else if (okText) toast(okText);
    return !error;
  }

  // --- questions -----------------------------------------------------------------------------
  function questionTools(q) {
    const bar = h("div", { class: "toolbar" });
    const id = q.id;
    if (q.status === "pending") {
      bar.append(
        h("button", { type: "button", class: "approve", text: t("approve"), on: { click: () => act(ev.MOD_APPROVE, { question_id: id }) } }),
        h("button", { type: "button", class: "reject danger", text: t("reject"), on: { click: () => act(ev.MOD_REJECT, { question_id: id }) } }));
      const into = h("input", { class: "merge-into", type: "number", min: "1", placeholder: t("merge_into") });
      bar.append(h("form", { class: "row merge-form", on: { submit: (e) => {
        e.preventDefault();
        const target = Number(into.value);
        if (target > 0) act(ev.MOD_MERGE, { question_id: id, into_id: target });
      } } }, into, h("button", { type: "submit", text: t("merge") })));
    }
    if (q.status === "approved") {
      const text = h("input", { class: "answer-input", maxlength: "1000", placeholder: t("answer_placeholder"), value: q.answer || "" });
      bar.append(h("form", { class: "row answer-form", on: { submit: async (e) => {
        e.preventDefault();
        if (text.value.trim()) await act(ev.MOD_ANSWER, { question_id: id, text: text.value.trim() });
      } } }, text, h("button", { type: "submit", class: "answer-submit", text: t("answer") })));
      bar.append(h("button", { type: "button", class: "pin-question", text: q.pinned ? t("unpin_question") : t("pin_question"),
        on: { click: () => (q.pinned ? act(ev.MOD_UNPIN_QUESTION, {}) : act(ev.MOD_PIN_QUESTION, { question_id: id })) } }));
    }
    return bar;
  }

  function renderQuestions() {
    const all = [...questions.values()];
    const pending = all.filter((q) => q.status === "pending").sort((a, b) => a.id - b.id);
    const approved = all.filter((q) => q.status === "approved").sort((a, b) => Number(b.pinned) - Number(a.pinned) || b.votes - a.votes || a.id - b.id);
    $("#pending").replaceChildren(...pending.slice(0, 200).map((q) => questionRow(q, { extra: questionTools(q) })));
    $("#approved").replaceChildren(...approved.slice(0, 200).map((q) => questionRow(q, { extra: questionTools(q) })));
  }

  mod.on(ev.MOD_ON_QUESTIONS, (list) => {
    questions.clear();
    for (const q of list || []) questions.set(String(q.id), q);
    renderQuestions();
  });
  mod.on(ev.MOD_ON_QUESTION, (q) => {
    questions.set(String(q.id), { ...(questions.get(String(q.id)) || {}), ...q });
    renderQuestions();
  });

  // --- settings and sanctions ----------------------------------------------------------------
  function renderModState(state) {
    $("#slow-mode").value = String(state.slow_mode_s ?? 0);
    if (document.activeElement !== $("#banned-words")) $("#banned-words").value = (state.banned_words || []).join("\n");
    const rows = [];
    for (const [kind, list] of [["mute", state.mutes || []], ["ban", state.bans || []]]) {
      for (const entry of list) {
        const who = entry.name || t("user_n", { id: entry.user_id });
        const until = entry.until ? t("until_time", { time: localTime(entry.until) }) : t("forever");
        rows.push(h("li", { class: "sanction" },
          h("span", { class: "badge", text: t(`${kind}_label`) }),
          h("strong", { class: "sanction-name", text: who }),
          h("span", { class: "muted", text: until }),
          entry.reason ? h("span", { class: "muted", text: entry.reason }) : null,
          h("button", { type: "button", class: "lift",
            text: t(kind === "mute" ? "unmute" : "unban"),
            "aria-label": `${t(kind === "mute" ? "unmute" : "unban")} ${who}`,
            on: { click: () => act(kind === "mute" ? ev.MOD_UNMUTE : ev.MOD_UNBAN, { user_id: entry.user_id }).then(refreshState) } })));
      }
    }
    $("#sanctions").replaceChildren(...rows);
    $("#no-sanctions").hidden = rows.length > 0;
  }
  async function refreshState() {
    try { renderModState(await api(`/api/sessions/${sessionId}/moderation`)); } catch { /* socket state suffices */ }
  }
  mod.on(ev.MOD_ON_STATE, renderModState);
  mod.on(ev.MOD_ON_LOG, (entry) => {
    if (["mute", "ban", "unmute", "unban", "slow_mode", "banned_words"].includes(entry.action)) refreshState();
  });
  $("#slow-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act(ev.MOD_SLOW_MODE, { seconds: Number($("#slow-mode").value || 0) }, t("saved"));
  });
  $("#words-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const words = $("#banned-words").value.split(/\n|,|,/).map((w) => w.trim()).filter(Boolean);
    act(ev.MOD_BANNED_WORDS, { words }, t("saved"));
  });

  // --- comments ------------------------------------------------------------------------------
  const muteLength = () => {
    const seconds = Number($("#mute-length").value);
    return seconds > 0 ? { duration_s: seconds } : {};
  };
  const comments = new CommentList($("#comment-list"), {
    max: 300,
    times: true,
    actions: (c) => {
      const userId = c.user && c.user.id;
      return h("span", { class: "actions" },
        h("button", { type: "button", class: "delete-comment", text: t("delete"), on: { click: () => act(ev.MOD_DELETE_COMMENT, { seq: c.seq, id: c.id }) } }),
        userId ? h("button", { type: "button", class: "mute-user", text: t("mute"), on: { click: () => act(ev.MOD_MUTE, { user_id: userId, ...muteLength() }, t("saved")) } }) : null,
        userId ? h("button", { type: "button", class: "ban-user danger", text: t("ban"), on: { click: () => act(ev.MOD_BAN, { user_id: userId }, t("saved")) } }) : null);
    },
  });
  live.on(ev.ON_HELLO, (hello) => { if (!hello.resumed) comments.clear(); });
  live.on(ev.ON_COMMENTS, (batch) => comments.add(Array.isArray(batch) ? batch : []));
  live.on(ev.ON_COMMENT_DELETED, (data) => comments.remove(data.id));
  window.linliModerate = { mod, live, questions, comments };
}

main();
