// /communities: the communities a host (an admin, a 团长) serves, one at a time. Join requests
// to approve or reject, members to search, tag and remove, a short notice to the members (or
// those with one interest tag), pickup points with their hours and the default one, the join
// policy and the 团长. What a 团长 may not change (points, policy, 团长) is hidden for him; the
// server refuses it anyway.
import { api, idempotencyKey, requireLogin } from "./api.js";
import { $, h, localTime, toast } from "./dom.js";
import { serverText, t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();
const state = { communities: [], current: null, choices: [], noticeKey: null };

function errText(err) {
  return serverText(err && err.code, err && err.message) || t("error");
}

function fail(err) {
  toast(`${t("error")}: ${errText(err)}`, "error");
}

function denied(key) {
  $("#cm-denied").textContent = t(key);
  $("#cm-denied").hidden = false;
  $("#cm-body").hidden = true;
}

const base = () => `/api/communities/${state.current.id}`;
const owner = () => state.current.role === "owner";

function who(item) {
  return h("span", { class: "cm-who" }, h("strong", { text: item.display_name || item.username }),
    h("span", { class: "muted", text: ` @${item.username}` }));
}

function button(text, onClick, { cls = "secondary", label } = {}) {
  const el = h("button", { type: "button", class: cls, text, "aria-label": label || text });
  el.addEventListener("click", async () => {
    el.disabled = true;
    try {
      await onClick();
    } catch (err) {
      fail(err);
    } finally {
      el.disabled = false;
    }
  });
  return el;
}

async function loadRequests() {
  const data = await api(`${base()}/join-requests`);
  $("#cm-request-list").replaceChildren(...data.items.map((item) => {
    const name = item.display_name || item.username;
    const decide = (verb) => async () => {
      await api(`${base()}/join-requests/${item.user_id}/${verb}`, { method: "POST" });
      toast(t(verb === "approve" ? "cm_approved" : "cm_rejected", { name }));
      await Promise.all([loadRequests(), loadMembers()]);
    };
    return h("li", { class: "cm-item", dataset: { userId: String(item.user_id) } },
      who(item), h("time", { class: "muted", datetime: item.requested_at, text: localTime(item.requested_at) }),
      h("span", { class: "cm-actions" },
        button(t("cm_approve"), decide("approve"), { cls: "primary", label: `${t("cm_approve")} ${name}` }),
        button(t("cm_reject"), decide("reject"), { label: `${t("cm_reject")} ${name}` })));
  }));
  $("#cm-requests-empty").hidden = data.items.length > 0;
}

function tagEditor(item) {
  const chosen = new Set(item.tags);
  const boxes = state.choices.map((tag) => h("label", { class: "check" },
    h("input", { type: "checkbox", value: tag, checked: chosen.has(tag) }), h("span", { text: t(`tag_${tag}`) })));
  const save = button(t("cm_tags_save"), async () => {
    const tags = boxes.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    await api(`${base()}/members/${item.user_id}/tags`, { method: "PUT", body: { tags } });
    toast(t("saved"));
    await loadMembers();
  }, { cls: "primary" });
  return h("details", { class: "cm-tags-edit" },
    h("summary", { text: t("cm_tags") }), h("div", { class: "cm-tag-boxes" }, ...boxes), save);
}

async function loadMembers() {
  const q = $("#cm-q").value.trim();
  const data = await api(`${base()}/members${q ? `?q=${encodeURIComponent(q)}` : ""}`);
  $("#cm-member-list").replaceChildren(...data.items.map((item) => {
    const name = item.display_name || item.username;
    const tags = h("span", { class: "cm-tags" },
      ...item.tags.map((tag) => h("span", { class: "chip", text: t(`tag_${tag}`) })));
    const remove = button(t("cm_remove"), async () => {
      await api(`${base()}/members/${item.user_id}`, { method: "DELETE" });
      toast(t("cm_removed", { name }));
      await loadMembers();
    }, { cls: "secondary danger", label: `${t("cm_remove")} ${name}` });
    const lead = owner() ? button(t("cm_make_leader"), async () => {
      await api(`${base()}/leaders/${item.user_id}`, { method: "PUT" });
      toast(t("cm_leader_made", { name }));
      await loadLeaders();
    }, { label: `${t("cm_make_leader")} ${name}` }) : null;
    return h("li", { class: "cm-item", dataset: { userId: String(item.user_id) } },
      who(item), tags, h("span", { class: "cm-actions" }, lead, remove), tagEditor(item));
  }));
  $("#cm-members-empty").hidden = data.items.length > 0;
}

async function loadLeaders() {
  if (!owner()) return;
  const data = await api(`${base()}/leaders`);
  $("#cm-leader-list").replaceChildren(...data.items.map((item) => {
    const name = item.display_name || item.username;
    return h("li", { class: "cm-item", dataset: { userId: String(item.user_id) } }, who(item),
      h("span", { class: "cm-actions" }, button(t("cm_dismiss"), async () => {
        await api(`${base()}/leaders/${item.user_id}`, { method: "DELETE" });
        await loadLeaders();
      }, { cls: "secondary danger", label: `${t("cm_dismiss")} ${name}` })));
  }));
  $("#cm-leaders-empty").hidden = data.items.length > 0;
}

function pointItem(point) {
  const flag = point.default ? h("span", { class: "badge ok", text: t("cm_default") }) : null;
  const summary = [h("strong", { text: point.name }), flag,
    h("span", { class: "muted cm-point-where", text: [point.address, point.hours].filter(Boolean).join(" · ") })];
  if (!owner()) return h("li", { class: "cm-item" }, ...summary);
  const field = (name, key, max) => h("label", {}, h("span", { text: t(key) }),
    h("input", { name, maxlength: String(max), value: point[name] || "" }));
  const form = h("form", { class: "stack cm-point-form", dataset: { pointId: String(point.id) } },
    field("name", "cm_point_name", 120), field("address", "cm_point_address", 200),
    field("hours", "cm_point_hours", 80),
    h("button", { type: "submit", class: "primary", text: t("save") }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    try {
      await api(`/api/pickup-points/${point.id}`, { method: "PATCH", body: {
        name: String(data.get("name")).trim(), address: String(data.get("address")).trim(),
        hours: String(data.get("hours")).trim() } });
      toast(t("saved"));
      await loadPoints();
    } catch (err) {
      fail(err);
    }
  });
  const makeDefault = point.default ? null : button(t("cm_make_default"), async () => {
    await api(`/api/pickup-points/${point.id}`, { method: "PATCH", body: { default: true } });
    await loadPoints();
  }, { label: `${t("cm_make_default")} ${point.name}` });
  return h("li", { class: "cm-item", dataset: { pointId: String(point.id) } }, ...summary,
    h("span", { class: "cm-actions" }, makeDefault),
    h("details", { class: "cm-point-edit" }, h("summary", { text: t("cm_point_edit") }), form));
}

async function loadPoints() {
  const points = await api(`${base()}/pickup-points`, { auth: false });
  $("#cm-point-list").replaceChildren(...points.map(pointItem));
}

function tagLabel(tag) {
  return tag ? t("cm_tag_only", { tag: t(`tag_${tag}`) }) : t("cm_all_members");
}

async function loadNotices() {
  const data = await api(`${base()}/notices`);
  $("#cm-notice-list").replaceChildren(...data.items.slice(0, 10).map((n) => h("li", { class: "cm-item" },
    h("span", { class: "cm-notice-text", text: n.text }),
    h("span", { class: "muted", text: `${tagLabel(n.tag)} · ${t("cm_notice_reached", { n: n.recipients })} · ${localTime(n.created_at)}` }))));
}

async function show() {
  const id = Number($("#cm-community").value);
  state.current = state.communities.find((c) => c.id === id);
  state.noticeKey = null;
  const url = new URL(location.href);
  url.searchParams.set("id", String(id));
  history.replaceState(null, "", url);
  $("#cm-role").textContent = t(owner() ? "cm_role_owner" : "cm_role_leader");
  $("#cm-pickup-link").href = `/pickup?community_id=${id}`;
  for (const el of document.querySelectorAll(".owner-only")) el.hidden = !owner();
  $("#cm-policy-select").value = state.current.join_policy;
  await Promise.all([loadRequests(), loadMembers(), loadPoints(), loadLeaders(), loadNotices()]);
}

$("#cm-search").addEventListener("submit", (e) => { e.preventDefault(); loadMembers().catch(fail); });
$("#cm-community").addEventListener("change", () => show().catch(fail));
$("#cm-notice-text").addEventListener("input", () => { state.noticeKey = null; });
$("#cm-notice-tag").addEventListener("change", () => { state.noticeKey = null; });

$("#cm-notice-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("#cm-notice-text").value.trim();
  if (!text) return;
  // One key per written notice: a double tap, or a retry after a lost answer, sends it once.
  state.noticeKey = state.noticeKey || idempotencyKey();
  const tag = $("#cm-notice-tag").value || null;
  const send = $("#cm-notice-send");
  send.disabled = true;
  try {
    const data = await api(`${base()}/notices`, { method: "POST", body: { text, tag },
      headers: { "Idempotency-Key": state.noticeKey } });
    $("#cm-notice-result").textContent = t(data.replayed ? "cm_notice_replayed" : "cm_notice_sent",
      { n: data.notice.recipients });
    $("#cm-notice-text").value = "";
    state.noticeKey = null;
    await loadNotices();
  } catch (err) {
    $("#cm-notice-result").textContent = `${t("error")}: ${errText(err)}`;
  } finally {
    send.disabled = false;
  }
});

$("#cm-point-add").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  const data = new FormData(form);
  try {
    await api(`${base()}/pickup-points`, { method: "POST", body: {
      name: String(data.get("name")).trim(), address: String(data.get("address")).trim(),
      hours: String(data.get("hours")).trim() } });
    form.reset();
    await loadPoints();
  } catch (err) {
    fail(err);
  }
});

$("#cm-policy").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const made = await api(base(), { method: "PATCH", body: { join_policy: $("#cm-policy-select").value } });
    state.current.join_policy = made.join_policy;
    toast(t("saved"));
  } catch (err) {
    fail(err);
  }
});

async function main() {
  if (!requireLogin()) return;
  const [mine, tags] = await Promise.all([api("/api/me/communities"), api("/api/me/tags")]);
  if (!mine.length) {
    denied("cm_none");
    return;
  }
  state.communities = mine;
  state.choices = tags.choices;
  $("#cm-community").replaceChildren(...mine.map((c) => h("option", { value: String(c.id), text: c.name })));
  $("#cm-notice-tag").replaceChildren(h("option", { value: "", text: t("cm_all_members") }),
    ...state.choices.map((tag) => h("option", { value: tag, text: tagLabel(tag) })));
  const wanted = new URLSearchParams(location.search).get("id");
  if (wanted && mine.some((c) => String(c.id) === wanted)) $("#cm-community").value = wanted;
  $("#cm-body").hidden = false;
  await show();
  document.body.dataset.ready = "1";
}

main().catch((err) => denied(err && err.code === "forbidden" ? "cm_none" : "error"));
window.linliCommunities = { state, show };
