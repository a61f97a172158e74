// /studio: the host's sessions (scheduled, live, ended) with times in his zone; schedule one with
// its cover, preview text and products; edit it; open the host console; share the room link,
// the preview page and an invite poster for each of his communities.
import { api } from "./api.js";
import { $, h, yuan } from "./dom.js";
import { t } from "./i18n.js";
import { errorMessage, isoToLocalInput, localInputToIso, requireOwner, say, upload } from "./backoffice.js";
import { mountShell } from "./shell.js";

mountShell();
const state = { sessions: [], products: [], communities: [], editing: null };

function whenText(iso) {
  if (!iso) return t("bo_no_time");
  return new Intl.DateTimeFormat(document.documentElement.lang === "en" ? "en-GB" : "zh-CN", {
    year: "numeric", month: "short", day: "numeric", weekday: "short", hour: "2-digit",
    minute: "2-digit", hourCycle: "h23",
  }).format(new Date(iso));
}

function productChoices(chosen = []) {
  const box = $("#s-products");
  const legend = box.querySelector("legend");
  const items = state.products.map((p) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "product", value: String(p.id), checked: chosen.includes(p.id) }),
    h("span", { text: `${p.name} ${yuan(p.price_fen)}/${p.unit}` })));
  if (items.length === 0) items.push(h("p", { class: "muted" }, t("bo_no_products"), " ",
    h("a", { href: "/catalog", text: t("bo_go_catalog") })));
  box.replaceChildren(legend, ...items);
}

function chosenProducts() {
  return [...document.querySelectorAll("#s-products input[name=product]:checked")].map((el) => Number(el.value));
}

async function copyLink(url, said) {
  try {
    await navigator.clipboard.writeText(url);
    said.textContent = t("bo_copied");
  } catch {
    // No clipboard permission: the link is shown beside the button to copy by hand.
    said.textContent = t("bo_copy_failed");
  }
}

function card(s) {
  const live = `${location.origin}/live/${s.id}`;
  const preview = `${location.origin}/preview/${s.id}`;
  const said = h("span", { text: t("bo_copy_share") });
  const copy = h("button", { type: "button", class: "copy", on: { click: () => copyLink(live, said) } },
    said, h("span", { class: "sr-only", text: ` ${s.title}` }));
  const posters = state.communities.map((c) => h("li", {},
    h("a", { class: "button-link", href: `/invites?community=${c.id}`, text: t("bo_invite_poster", { community: c.name }) })));
  const editable = s.status !== "ended";
  return h("li", { class: "card session", dataset: { id: String(s.id), status: s.status } },
    s.cover_url ? h("img", { class: "thumb", src: s.cover_url, alt: t("bo_cover_of", { title: s.title }) }) : null,
    h("div", { class: "session-body" },
      h("h3", {}, h("span", { class: `state state-${s.status}`, text: t(`status_${s.status}`) }), " ",
        h("span", { class: "s-title", text: s.title })),
      h("p", { class: "when" }, h("time", { datetime: s.scheduled_at || "", text: whenText(s.scheduled_at) })),
      h("div", { class: "row wrap actions" },
        h("a", { class: "button-link primary", href: `/host/${s.id}`, text: t("bo_console") }),
        editable ? h("button", { type: "button", class: "edit", on: { click: () => edit(s) } }, t("bo_edit")) : null,
        copy),
      h("p", { class: "links" }, h("span", { text: `${t("bo_share_link")}: ` }), h("a", { href: live, text: live })),
      h("p", { class: "links" }, h("span", { text: `${t("bo_preview_link")}: ` }), h("a", { class: "preview-link", href: preview, text: preview })),
      posters.length ? h("ul", { class: "posters" }, ...posters) : null));
}

function render() {
  const order = { live: 0, scheduled: 1, ended: 2 };
  const list = [...state.sessions].sort((a, b) => (order[a.status] - order[b.status])
    || String(b.scheduled_at || "").localeCompare(String(a.scheduled_at || "")));
  $("#sessions").replaceChildren(...list.map(card));
  $("#no-sessions").hidden = list.length > 0;
}

async function edit(s) {
  const full = await api(`/api/sessions/${s.id}/preview`);
  state.editing = s.id;
  $("#form-title").textContent = t("bo_edit_session", { title: s.title });
  $("#s-title").value = full.title;
  $("#s-when").value = isoToLocalInput(full.scheduled_at);
  $("#s-text").value = full.preview_text || "";
  $("#s-cover").value = "";
  productChoices(full.preview_product_ids || []);
  $("#s-save").textContent = t("bo_save");
  $("#s-cancel").hidden = false;
  $("#s-title").focus();
}

function resetForm() {
  state.editing = null;
  $("#session-form").reset();
  $("#form-title").textContent = t("bo_schedule");
  $("#s-save").textContent = t("bo_schedule_save");
  $("#s-cancel").hidden = true;
  productChoices();
}

async function save(event) {
  event.preventDefault();
  const button = $("#s-save");
  button.disabled = true;
  try {
    const title = $("#s-title").value.trim();
    const scheduled_at = localInputToIso($("#s-when").value);
    const preview_text = $("#s-text").value;
    const file = $("#s-cover").files[0];
    let id = state.editing;
    if (id === null) {
      id = (await api("/api/sessions", { method: "POST", body: { title, preview_text, scheduled_at } })).id;
    }
    const body = { title, preview_text, scheduled_at, product_ids: chosenProducts() };
    if (file) body.cover_upload_id = (await upload(file, "cover")).id;
    await api(`/api/sessions/${id}/preview`, { method: "PUT", body });
    say("#s-status", t(state.editing === null ? "bo_scheduled" : "bo_saved"));
    resetForm();
    await loadSessions();
  } catch (err) {
    say("#s-status", errorMessage(err), "error");
  } finally {
    button.disabled = false;
  }
}

async function loadSessions() {
  const query = state.me.role === "admin" ? "" : `?host_id=${state.me.id}`;
  state.sessions = await api(`/api/sessions${query}`, { auth: false });
  render();
}

async function load() {
  const me = requireOwner();
  if (!me) return;
  state.me = me;
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  $("#s-zone").textContent = t("bo_zone", { zone });
  const [products, communities] = await Promise.all([
    api("/api/products"), api("/api/communities", { auth: false })]);
  state.products = products;
  state.communities = me.role === "admin" ? [] : communities.filter((c) => c.created_by === me.id);
  productChoices();
  $("#session-form").addEventListener("submit", save);
  $("#s-cancel").addEventListener("click", resetForm);
  $("#owner-only").hidden = false;
  await loadSessions();
}

load().catch((err) => say("#denied", errorMessage(err), "error"));
