// A scheduled session's preview: cover, start time in the viewer's own zone, products, the
// preview text, and 预约 (a reminder when it goes live, delivered by notices.js).
import { api, goLogin, token } from "./api.js";
import { $, h, pathId, yuan } from "./dom.js";
import { lang, t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();
const sessionId = pathId();
let current = null;

/** "12月3日 周四 20:00" in the viewer's zone; the wire time always carries its offset. */
export function startText(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Intl.DateTimeFormat(lang() === "en" ? "en-GB" : "zh-CN", {
    month: "short", day: "numeric", weekday: "short", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23",
  }).format(date);
}

function show(data) {
  current = data;
  document.title = `${data.title} · ${t("preview_title")}`;
  $("#title").textContent = data.title;
  const cover = $("#cover");
  if (data.cover_url && data.cover_url.startsWith("/api/uploads/")) {
    cover.src = data.cover_url;
    cover.alt = data.title;
    cover.hidden = false;
  }
  const when = $("#when");
  when.dateTime = data.scheduled_at || "";
  when.textContent = startText(data.scheduled_at) || "—";
  $("#text").textContent = data.preview_text || "";
  const status = $("#status");
  status.textContent = t(`status_${data.status}`);
  status.hidden = false;
  $("#count").textContent = t("preview_count", { n: data.subscribers });
  const scheduled = data.status === "scheduled";
  const button = $("#subscribe");
  button.hidden = !scheduled || !token();
  button.textContent = t(data.subscribed ? "preview_subscribed" : "preview_subscribe");
  button.setAttribute("aria-pressed", String(Boolean(data.subscribed)));
  button.classList.toggle("primary", !data.subscribed);
  const login = $("#login");
  login.hidden = !scheduled || Boolean(token());
  login.href = `/login?next=${encodeURIComponent(location.pathname)}`;
  const watch = $("#watch");
  watch.hidden = data.status !== "live";
  watch.href = `/live/${data.id}`;
  $("#ended").hidden = data.status !== "ended";
  $("#hint").hidden = !scheduled;
  const list = $("#products");
  list.replaceChildren(...(data.products || []).map((p) =>
    h("li", { class: "card" }, h("b", { text: p.name }), " ",
      h("span", { class: "price", text: `${yuan(p.price_fen)}/${p.unit || ""}` }))));
  $("#no-products").hidden = (data.products || []).length > 0;
}

// Signed in, the preview's own link carries her share code (?ref=), as the live room's poster does.
async function showShare() {
  if (!token()) return;
  const card = await api(`/api/sessions/${sessionId}/share?page=preview`).catch(() => null);
  if (!card || !card.ref) return;
  $("#share-url").value = card.url;
  $("#share-qr").replaceChildren(h("img", { class: "poster-qr", src: card.qr_svg, alt: t("share_qr_alt"),
    width: "160", height: "160" }));
  $("#share-box").hidden = false;
}

$("#share-copy").addEventListener("click", async () => {
  $("#share-url").select();
  try {
    await navigator.clipboard.writeText($("#share-url").value);
  } catch {
    document.execCommand?.("copy");
  }
  $("#share-copied").textContent = t("ref_copied");
});

async function load() {
  try {
    show(await api(`/api/sessions/${sessionId}/preview`));
    showShare();
  } catch (err) {
    const box = $("#error");
    box.textContent = err.code === "not_found" ? t("not_found") : t("error");
    box.hidden = false;
  }
}

$("#subscribe").addEventListener("click", async (e) => {
  if (!token()) return goLogin();
  const button = e.currentTarget;
  button.disabled = true;
  try {
    const reply = await api(`/api/sessions/${sessionId}/subscribe`,
      { method: current && current.subscribed ? "DELETE" : "POST" });
    show({ ...current, subscribed: reply.subscribed, subscribers: reply.subscribers });
  } catch {
    await load();
  } finally {
    button.disabled = false;
  }
});

// Our session went live while the page was open: the page turns into the way in.
document.addEventListener("linli:notification", (e) => {
  const notice = e.detail || {};
  if (notice.kind === "session_live" && notice.params && notice.params.session_id === sessionId) load();
});

load();
