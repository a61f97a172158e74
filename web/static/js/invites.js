// /invites: a host (or admin) makes a link and QR poster for one of their communities to post
// in its WeChat group, sees how many joined through each, and revokes one at once.
import { api, requireLogin } from "./api.js";
import { $, h, localTime } from "./dom.js";
import { t } from "./i18n.js";
import { errorText } from "./joined.js";
import { mountShell } from "./shell.js";

const me = mountShell();
const DAY_MS = 24 * 3600 * 1000;
let communities = [];

function denied(key) {
  $("#invites-denied").textContent = t(key);
  $("#invites-denied").hidden = false;
}

function stateText(invite) {
  const uses = invite.max_uses ? `${invite.uses}/${invite.max_uses}` : String(invite.uses);
  const parts = [t(`invite_state_${invite.state}`), t("invite_joined", { n: uses })];
  if (invite.expires_at) parts.push(t("join_valid_until", { time: localTime(invite.expires_at) }));
  return parts.join(" · ");
}

function item(invite) {
  const name = (communities.find((c) => c.id === invite.community_id) || {}).name || "";
  const live = invite.state === "valid";
  const url = h("input", { class: "invite-url", readonly: true, value: invite.url,
    "aria-label": t("invite_link_of", { community: name }) });
  const copy = h("button", { type: "button", class: "secondary", text: t("copy_link"), on: { click: async () => {
    url.select();
    try {
      await navigator.clipboard.writeText(invite.url);
      copy.textContent = t("copied");
    } catch {
      copy.textContent = t("copy_by_hand");
    }
  } } });
  const revoke = h("button", { type: "button", class: "secondary danger", text: t("revoke"), on: { click: async () => {
    revoke.disabled = true;
    try {
      await api(`/api/invites/${encodeURIComponent(invite.code)}`, { method: "DELETE" });
      await refresh();
    } catch (err) {
      revoke.disabled = false;
      $("#inv-error").textContent = errorText(err);
      $("#inv-error").hidden = false;
    }
  } } });
  return h("li", { class: `card invite-item state-${invite.state}`, dataset: { code: invite.code } },
    h("p", { class: "invite-community", text: name }),
    h("p", { class: "invite-state", text: stateText(invite) }),
    live ? h("img", { class: "qr", src: invite.qr_svg, alt: t("invite_qr_of", { community: name }),
                      width: "240", height: "240" }) : null,
    live ? url : null,
    live ? copy : null,
    live ? revoke : null);
}

async function refresh() {
  const lists = await Promise.all(communities.map((c) => api(`/api/communities/${c.id}/invites`)));
  const all = lists.flatMap((list) => list.items).sort((a, b) => b.created_at.localeCompare(a.created_at));
  $("#invite-list").replaceChildren(...all.slice(0, 50).map(item));
}

function showPolicy() {
  const chosen = communities.find((c) => String(c.id) === $("#inv-community").value);
  $("#inv-policy").textContent = chosen ? t(chosen.join_policy === "approval" ? "join_policy_approval" : "join_policy_open") : "";
}

$("#invite-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("#inv-error").hidden = true;
  const body = {};
  const days = $("#inv-days").value;
  if (days) body.expires_at = new Date(Date.now() + Number(days) * DAY_MS).toISOString();
  const uses = $("#inv-uses").value.trim();
  if (uses) body.max_uses = Number(uses);
  $("#inv-create").disabled = true;
  try {
    await api(`/api/communities/${$("#inv-community").value}/invites`, { method: "POST", body });
    await refresh();
  } catch (err) {
    $("#inv-error").textContent = errorText(err);
    $("#inv-error").hidden = false;
  } finally {
    $("#inv-create").disabled = false;
  }
});

async function load() {
  if (!requireLogin()) return;
  if (!me || (me.role !== "host" && me.role !== "admin")) {
    denied("invites_hosts_only");
    return;
  }
  const all = await api("/api/communities", { auth: false });
  // Each community's links are one request: an admin sees the newest 30 communities here.
  communities = (me.role === "admin" ? all.slice(-30) : all.filter((c) => c.created_by === me.id)).reverse();
  if (communities.length === 0) {
    denied("invites_no_community");
    return;
  }
  $("#inv-community").replaceChildren(...communities.map((c) => h("option", { value: String(c.id), text: c.name })));
  // The sessions page links here with ?community=<id> to make that community's poster.
  const wanted = new URLSearchParams(location.search).get("community");
  if (wanted && communities.some((c) => String(c.id) === wanted)) $("#inv-community").value = wanted;
  $("#inv-community").addEventListener("change", showPolicy);
  showPolicy();
  $("#invite-maker").hidden = false;
  await refresh();
}

load().catch((err) => denied(err && err.code === "forbidden" ? "invites_hosts_only" : "error"));
