// Host console: camera → WHIP, products and pins, flash sales and group-buys, approved
// questions, live counters, and ending the session (which starts the replay build).
import { api, requireLogin } from "./api.js";
import { CommentList } from "./comments.js";
import { $, pathId, toast } from "./dom.js";
import * as ev from "./events.js";
import { HostCommerce } from "./host_commerce.js";
import { HostCamera } from "./host_media.js";
import { t } from "./i18n.js";
import { RoomConnection, replyError } from "./realtime.js";
import { questionRow, renderGroups, renderPin, withEvidence } from "./room_view.js";
import { mountShell } from "./shell.js";
import { mountTabs } from "./tabs.js";

const sessionId = pathId();
mountShell();

async function main() {
  if (!requireLogin()) return;
  let session;
  try {
    session = await api(`/api/sessions/${sessionId}`);
  } catch (err) {
    $("#title").textContent = `${t("error")}: ${err.message}`;
    return;
  }
  $("#title").textContent = session.title || "";
  if (!session.stream_key) {
    $("#media-error").textContent = `${t("refused")}: ${t("host_title")}`;
    $("#media-error").hidden = false;
  }
  const camera = new HostCamera(sessionId, session.stream_key);
  streamKeyBox(camera, session.stream_key);
  camera.watchPublisher(() => api(`/api/sessions/${sessionId}`));
  // Ask for the camera at once so the device names show up in the picker.
  camera.open().then(() => camera.listDevices()).catch(() => {});

  const conn = new RoomConnection(ev.NS_LIVE, sessionId);
  const pin = async (productId) => {
    const error = replyError(await conn.request(ev.SEND_PIN_PRODUCT, { product_id: productId }));
    if (error) toast(`${t("refused")}: ${error.message || error.code}`, "error");
  };
  const showTab = mountTabs($("#console-tabs"));
  // 开售 on a product row: the sale form, that product chosen, the stock field ready to type in.
  const sell = (productId) => {
    showTab("tab-sales");
    $("#sale-product").value = String(productId);
    $("#sale-price").value = "";
    commerce.suggestPrice();
    $("#sale-stock").focus({ preventScroll: true });
  };
  const commerce = new HostCommerce(sessionId, { pin, sell });
  commerce.load();
  $("#unpin").addEventListener("click", async () => {
    const error = replyError(await conn.request(ev.SEND_UNPIN_PRODUCT, {}));
    if (error) toast(error.message || error.code, "error");
  });

  // The neighbours' comments, as they see them (read-only here; moderation has the tools).
  const comments = new CommentList($("#comment-list"));
  conn.on(ev.ON_HELLO, (hello) => { if (!hello.resumed) comments.clear(); });
  conn.on(ev.ON_COMMENTS, (batch) => comments.add(Array.isArray(batch) ? batch : []));
  conn.on(ev.ON_COMMENT_DELETED, (data) => comments.remove(data.id));

  const questions = new Map();
  const renderQuestions = () => {
    const list = [...questions.values()].sort((a, b) => Number(b.votes || 0) - Number(a.votes || 0));
    $("#question-list").replaceChildren(...list.slice(0, 100).map((q) => questionRow(q, {
      extra: document.createTextNode(q.answer ? ` ✓ ${t("answered")}` : ` · ${t("unanswered")}`),
    })));
  };
  const upsert = (q) => {
    if (q.status && q.status !== "approved") questions.delete(String(q.id));
    else questions.set(String(q.id), { ...(questions.get(String(q.id)) || {}), ...q });
  };
  conn.on(ev.ON_QUESTIONS, (list) => { for (const q of list || []) upsert(q); renderQuestions(); });
  conn.on(ev.ON_QUESTION, (q) => { upsert(q); renderQuestions(); });
  let pinKey = "";
  let lastSalesLoad = 0;
  conn.on(ev.ON_STATE, async (state) => {
    $("#c-viewers").textContent = String(state.viewers ?? 0);
    $("#c-likes").textContent = String(state.likes ?? 0);
    const sales = state.sales || [];
    $("#c-sold").textContent = String(sales.reduce((n, s) => n + Number(s.sold || 0), 0));
    $("#c-held").textContent = String(sales.reduce((n, s) => n + Number(s.held || 0), 0));
    renderGroups($("#groups"), $("#group-list"), state.groups);
    for (const [id, votes] of Object.entries(state.question_votes || {})) {
      const q = questions.get(String(id));
      if (q) q.votes = Number(votes);
    }
    renderQuestions();
    const key = state.pinned ? String(state.pinned.id) : "";
    if (key !== pinKey) {
      pinKey = key;
      renderPin($("#pin-card"), state.pinned);
      const full = await withEvidence(state.pinned);
      if (pinKey === key) renderPin($("#pin-card"), full);
    }
    // The sale rows show counts too; refresh them at most every 2 s, whatever the state rate.
    if (sales.length && Date.now() - lastSalesLoad > 2000) {
      lastSalesLoad = Date.now();
      commerce.loadSales();
    }
  });

  // Two taps to end: a slip of the thumb must not end a live sale.
  let armed = 0;
  $("#end-session").addEventListener("click", async (e) => {
    const button = e.currentTarget;
    if (!armed) {
      button.textContent = t("end_confirm");
      armed = setTimeout(() => { armed = 0; button.textContent = t("end_session"); }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = 0;
    button.disabled = true;
    try {
      await camera.stop();
      await api(`/api/sessions/${sessionId}/end`, { method: "POST" });
      $("#end-state").textContent = t("status_ended");
      button.textContent = t("status_ended");
    } catch (err) {
      button.disabled = false;
      button.textContent = t("end_session");
      toast(`${t("error")}: ${err.message}`, "error");
    }
  });
  window.linliHost = { camera, conn, commerce };
}

/** The 推流 tab's key for another app (OBS speaks WHIP); a new key stops the old one at once. */
function streamKeyBox(camera, key) {
  $("#whip-url").value = `${location.origin}/whip/${sessionId}`;
  $("#stream-key").value = key || "";
  $("#show-key").addEventListener("click", (e) => {
    const shown = $("#stream-key").type === "text";
    $("#stream-key").type = shown ? "password" : "text";
    e.currentTarget.setAttribute("aria-pressed", shown ? "false" : "true");
  });
  let armed = 0;
  $("#rotate-key").addEventListener("click", async () => {
    if (!armed) {
      $("#key-state").textContent = t("console_rotate_confirm");
      armed = setTimeout(() => { armed = 0; $("#key-state").textContent = ""; }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = 0;
    try {
      const made = await api(`/api/sessions/${sessionId}/stream-key`, { method: "POST", body: { disconnect: false } });
      $("#stream-key").value = made.stream_key;
      camera.key = made.stream_key;
      $("#key-state").textContent = t("console_key_rotated");
    } catch (err) {
      $("#key-state").textContent = `${t("error")}: ${err.message}`;
    }
  });
}

main();
