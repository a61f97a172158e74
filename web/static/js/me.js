// My page: interest tags (from a fixed list, shown in the page's language) and every
// notification, newest first, a page at a time.
import { api, requireLogin } from "./api.js";
import { $, h, localTime } from "./dom.js";
import { t } from "./i18n.js";
import { noticeText } from "./notices.js";
import { mountShell } from "./shell.js";

const user = mountShell();
let chosen = new Set();
let max = 5;
let next = null;

function tagButtons(choices) {
  $("#tags").replaceChildren(...choices.map((tag) => h("button", {
    type: "button", class: chosen.has(tag) ? "chip active" : "chip", dataset: { tag },
    "aria-pressed": String(chosen.has(tag)), text: t(`tag_${tag}`),
    on: { click: (e) => {
      const el = e.currentTarget;
      if (chosen.has(tag)) chosen.delete(tag);
      else if (chosen.size < max) chosen.add(tag);
      el.setAttribute("aria-pressed", String(chosen.has(tag)));
      el.classList.toggle("active", chosen.has(tag));
      $("#tags-status").textContent = "";
    } },
  })));
}

async function loadTags() {
  const data = await api("/api/me/tags");
  chosen = new Set(data.tags);
  max = data.max;
  $("#tags-hint").textContent = t("me_tags_hint", { n: max });
  tagButtons(data.choices);
}

$("#tags-save").addEventListener("click", async () => {
  const status = $("#tags-status");
  try {
    const data = await api("/api/me/tags", { method: "PUT", body: { tags: [...chosen] } });
    chosen = new Set(data.tags);
    status.textContent = t("me_tags_saved");
  } catch (err) {
    status.textContent = err.message || t("error");
  }
});

function noticeRow(n) {
  return h("li", { class: n.read_at ? "notice-item" : "notice-item unread" },
    h("a", { href: /^\/[a-z0-9/_-]*$/i.test(n.link || "") ? n.link : "/me", text: noticeText(n) }),
    h("time", { class: "muted", datetime: n.created_at, text: localTime(n.created_at) }));
}

async function loadNotices(more = false) {
  const page = await api(`/api/notifications?limit=20${more && next ? `&before=${next}` : ""}`);
  const list = $("#notice-items");
  if (!more) list.replaceChildren();
  list.append(...page.items.map(noticeRow));
  next = page.next;
  $("#more").hidden = next === null;
  $("#notices-empty").hidden = list.children.length > 0;
}

$("#more").addEventListener("click", () => loadNotices(true));
$("#read-all").addEventListener("click", async () => {
  await api("/api/notifications/read", { method: "POST", body: { all: true } });
  await loadNotices();
});
document.addEventListener("linli:notification", (e) => $("#notice-items").prepend(noticeRow(e.detail)));

if (requireLogin()) {
  if (user) $("#name").textContent = user.display_name || user.username || t("me_title");
  loadTags();
  loadNotices();
}
