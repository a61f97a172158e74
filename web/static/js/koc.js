// The 品鉴官 programmes a neighbour may join: rules, quota, what it takes to apply, her own
// status, and her trust points. Criteria are checked by the server when she applies.
import { api, currentUser, goLogin, token } from "./api.js";
import { $, h, localTime } from "./dom.js";
import { lang, t } from "./i18n.js";
import { mountShell } from "./shell.js";
import { badgeChip } from "./ugc_view.js";

mountShell();

function say(text, ok) {
  const out = $("#message");
  out.textContent = text;
  out.className = ok ? "ok" : "error";
}

function statusLine(mine) {
  if (!mine) return null;
  const key = mine.status === "selected" && !mine.active ? "koc_status_lapsed" : `koc_status_${mine.status}`;
  return h("p", { class: "koc-status", text: t(key) });
}

function card(programme, mine) {
  const li = h("li", { class: "card koc-programme", dataset: { id: String(programme.id) } },
    h("h2", {}, h("span", { text: programme.title }), badgeChip(programme.badge)),
    programme.rules ? h("p", { class: "koc-rules", text: programme.rules }) : null,
    h("p", { class: "muted", text: t("koc_quota", { selected: programme.selected, quota: programme.quota }) }),
    h("p", { class: "muted", text: t("koc_criteria", { orders: programme.min_orders, reviews: programme.min_reviews }) }),
    h("p", { class: "muted", text: t("koc_exit", { days: programme.exit_days }) }),
    statusLine(mine));
  if (!mine || ["rejected", "lapsed"].includes(mine.status) || (mine.status === "selected" && !mine.active)) {
    const button = h("button", { type: "button", class: "primary koc-apply", text: t("koc_apply") });
    button.addEventListener("click", async () => {
      if (!token()) { goLogin(); return; }
      button.disabled = true;
      try {
        const applied = await api(`/api/koc/programmes/${programme.id}/apply`, { method: "POST", body: {} });
        li.querySelector(".koc-status")?.remove();
        button.replaceWith(statusLine({ ...applied, active: false }));
        say(t("koc_applied"), true);
      } catch (err) {
        button.disabled = false;
        if (err.code === "criteria_not_met") {
          const have = err.details.have || {};
          say(t("koc_not_yet", { orders: have.orders ?? 0, reviews: have.reviews ?? 0 }), false);
        } else {
          say(err.message, false);
        }
      }
    });
    li.append(button);
  }
  return li;
}

async function main() {
  const signedIn = Boolean(token());
  const [list, me] = await Promise.all([
    api("/api/koc/programmes", { auth: false }).catch(() => ({ items: [] })),
    signedIn ? api("/api/koc/me").catch(() => null) : null]);
  const mine = new Map(((me && me.memberships) || []).map((m) => [m.programme_id, m]));
  const user = currentUser();
  const links = [];
  if (user && ["host", "admin"].includes(user.role)) links.push(h("a", { href: "/koc/admin", class: "button-link", text: t("koc_manage") }));
  if (user && ["assistant", "admin"].includes(user.role)) links.push(h("a", { href: "/ugc/moderate", class: "button-link", text: t("ugc_mod_title") }));
  $("#staff-links").replaceChildren(...links);
  const items = list.items || [];
  $("#programmes").replaceChildren(...items.map((p) => card(p, mine.get(p.id))));
  $("#empty").hidden = items.length > 0;
  if (me) {
    const pts = me.points || {};
    $("#points-balance").textContent = t("points_balance", { n: pts.balance ?? 0 });
    $("#points-title-chip").replaceChildren(pts.title ? h("span", { class: "badge ok", text: lang() === "en" ? pts.title.en : pts.title.zh }) : "");
    $("#points-expiry").textContent = pts.next_expiry ? t("points_expiry", { time: localTime(pts.next_expiry) }) : "";
    if (user && user.id) $("#profile-link").href = `/u/${user.id}`;
    $("#my-points").hidden = false;
  }
  document.body.dataset.ready = "1";
}

main();
