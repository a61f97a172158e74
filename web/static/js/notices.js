// The bell every neighbour page shares: unread count in the top bar, the latest notifications
// on a tap, and a toast the moment one arrives over the socket (/me, the signed-in user's own
// channel). A page includes it with one <script type="module"> tag; it needs nothing else.
// Notifications come as a kind and its params; the words are the translation table's, so a
// page shows them in one language.
import { io } from "/vendor/socket.io/socket.io.esm.min.js";
import { api, token } from "./api.js";
import { h, localTime, yuan } from "./dom.js";
import { t } from "./i18n.js";

const TOAST_MS = 8000;
const state = { unread: 0, items: [], open: false, socket: null, loaded: false };

/** The sentence for one notification, in the page's language. */
export function noticeText(notice) {
  const p = notice.params || {};
  switch (notice.kind) {
    case "order_ready":
      return t("notice_order_ready", { id: p.order_id, name: p.product_name || "" });
    case "order_refunded":
      return t("notice_order_refunded", { id: p.order_id, amount: yuan(p.amount_fen) });
    case "claim_decided":
      if (p.status === "reshipped") return t("notice_claim_reshipped", { id: p.claim_id });
      return p.status === "approved"
        ? t("notice_claim_approved", { id: p.claim_id, amount: yuan(p.payout_fen) })
        : t("notice_claim_rejected", { id: p.claim_id });
    case "session_live":
      return t("notice_session_live", { title: p.title || "" });
    case "community_notice":
      return t("notice_community", { community: p.community_name || "", text: p.text || "" });
    case "guest_invite":
      return t("notice_guest_invite", { title: p.title || "" });
    case "koc_selected":
      return t("notice_koc_selected", { title: p.title || "", badge: p.badge || "" });
    case "sample_sent":
      return t("notice_sample_sent", { product: p.product || "", due: p.due_at ? localTime(p.due_at) : "" });
    default:
      return t("notice_other");
  }
}

/** Only links of this site: a notification's link is ours, but never trusted to be. */
function safeLink(link) {
  return typeof link === "string" && /^\/[a-z0-9/_-]*$/i.test(link) ? link : "/me";
}

const SVG = "http://www.w3.org/2000/svg";

/** A bell drawn in SVG: phones without an emoji font would show a box for 🔔. */
function bellIcon() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "bell-icon");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1z");
  svg.append(path);
  return svg;
}

function bell() {
  let button = document.getElementById("notice-bell");
  if (button) return button;
  button = h("button", {
    type: "button", id: "notice-bell", class: "bell", "aria-haspopup": "true",
    "aria-expanded": "false", "aria-controls": "notice-panel",
    on: { click: toggle },
  }, bellIcon(), h("span", { class: "bell-count", id: "notice-count", hidden: true }));
  return button;
}

function panel() {
  let box = document.getElementById("notice-panel");
  if (!box) {
    box = h("section", { id: "notice-panel", class: "notice-panel card", hidden: true,
                         "aria-label": t("notices") });
    document.body.append(box);
  }
  return box;
}

function place() {
  const top = document.getElementById("top");
  if (!top) return;
  const button = bell();
  if (button.parentElement !== top) {
    // Before the language switch, so the bar reads: … name · bell · language.
    const lang = document.getElementById("lang-switch");
    if (lang && lang.parentElement === top) top.insertBefore(button, lang);
    else top.append(button);
  }
  render();
}

function render() {
  const count = document.getElementById("notice-count");
  const button = document.getElementById("notice-bell");
  if (!count || !button) return;
  count.textContent = state.unread > 99 ? "99+" : String(state.unread);
  count.hidden = state.unread === 0;
  button.setAttribute("aria-label", state.unread
    ? t("notices_unread", { n: state.unread }) : t("notices"));
  if (!state.open) return;
  const box = panel();
  const list = state.items.length
    ? h("ul", { class: "notice-list" }, state.items.map((n) =>
      h("li", { class: n.read_at ? "notice-item" : "notice-item unread" },
        h("a", { href: safeLink(n.link), text: noticeText(n) }),
        h("time", { class: "muted", datetime: n.created_at, text: localTime(n.created_at) }))))
    : h("p", { class: "muted", text: t("notices_none") });
  box.replaceChildren(
    h("div", { class: "pin-head" }, h("h2", { text: t("notices") }),
      h("a", { href: "/me", text: t("notices_all") })),
    list);
}

async function toggle() {
  state.open = !state.open;
  const box = panel();
  // Under the top bar, however many lines it wraps to on this screen: the bell stays in reach
  // to close the list again.
  const bar = document.getElementById("top");
  if (bar) box.style.setProperty("--below-top", `${Math.ceil(bar.getBoundingClientRect().bottom) + 4}px`);
  box.hidden = !state.open;
  document.getElementById("notice-bell")?.setAttribute("aria-expanded", String(state.open));
  render();
  if (state.open && state.unread > 0) {
    try {
      const done = await api("/api/notifications/read", { method: "POST", body: { all: true } });
      state.unread = done.unread;
      for (const n of state.items) n.read_at = n.read_at || new Date().toISOString();
      render();
    } catch {
      // Still unread on the server: the count stays, the next tap tries again.
    }
  }
}

function showToast(notice) {
  let area = document.getElementById("notice-toasts");
  if (!area) {
    area = h("div", { id: "notice-toasts", class: "notice-toasts", role: "status", "aria-live": "polite" });
    document.body.append(area);
  }
  const item = h("a", { class: "notice-toast", href: safeLink(notice.link), dataset: { kind: notice.kind } },
    noticeText(notice));
  area.append(item);
  setTimeout(() => item.remove(), TOAST_MS);
}

function received(notice) {
  if (!notice || typeof notice !== "object" || state.items.some((n) => n.id === notice.id)) return;
  state.items.unshift(notice);
  state.items.length = Math.min(state.items.length, 20);
  state.unread += notice.read_at ? 0 : 1;
  render();
  showToast(notice);
  document.dispatchEvent(new CustomEvent("linli:notification", { detail: notice }));
}

async function load() {
  try {
    const page = await api("/api/notifications?limit=20");
    state.items = page.items;
    state.unread = page.unread;
    render();
  } catch {
    // Signed out meanwhile, or offline: the bell stays at zero.
  }
}

function connect() {
  state.socket = io("/me", {
    path: "/socket.io/",
    transports: ["websocket", "polling"],
    auth: (cb) => cb({ token: token() || "" }),
    reconnectionDelayMax: 5000,
  });
  state.socket.on("notification", received);
  // Back after a drop: anything that came meanwhile is in the list.
  state.socket.on("connect", () => { if (state.loaded) load(); state.loaded = true; });
  state.socket.on("connect_error", (err) => {
    const code = err && err.data && err.data.code;
    if (code === "unauthorized") state.socket.disconnect();
  });
}

export function mountNotices() {
  if (!token()) return;
  place();
  // The page's own script may rebuild the top bar (shell.js) after us: put the bell back.
  const top = document.getElementById("top");
  if (top) new MutationObserver(place).observe(top, { childList: true });
  load();
  connect();
}

mountNotices();
// For tests and the pages that want to know: connected or not, and what arrived.
window.linliNotices = { state, connected: () => Boolean(state.socket && state.socket.connected) };
