// The host console's guest control (连线): invite a signed-in neighbour or expert by username,
// share her page link, see whether she is on air, and end her part at any time.
// Self-contained: it fills #guest-card and talks only to /api/sessions/{id}/guest.
import { api } from "./api.js";
import { $, h, pathId } from "./dom.js";
import { serverText, t } from "./i18n.js";

const POLL_MS = 3000;

export function mountGuestControl(root = $("#guest-card"), sessionId = pathId()) {
  if (!root) return;
  const input = h("input", { id: "guest-username", maxlength: "64", autocomplete: "off" });
  const invite = h("button", { type: "button", id: "guest-invite", class: "primary" }, t("guest_invite"));
  const end = h("button", { type: "button", id: "guest-end", hidden: true }, t("guest_end"));
  const status = h("p", { id: "guest-status", class: "muted", role: "status" }, t("guest_none"));
  const link = h("p", { id: "guest-link", class: "muted", hidden: true });
  root.replaceChildren(
    h("h2", {}, t("guest_heading")),
    h("div", { class: "row wrap" },
      h("label", {}, h("span", {}, t("guest_username")), input), invite, end),
    status, link,
  );

  function show(guest) {
    end.hidden = !guest;
    link.hidden = !guest;
    if (!guest) {
      status.textContent = t("guest_none");
      root.dataset.guest = "none";
      return;
    }
    const key = guest.on_air ? "guest_state_on_air" : guest.connected ? "guest_state_connecting" : "guest_state_invited";
    status.textContent = `${guest.username || `#${guest.user_id}`}: ${t(key)}`;
    root.dataset.guest = guest.on_air ? "on_air" : "invited";
  }

  let known = null;
  async function refresh() {
    try {
      const { guest } = await api(`/api/sessions/${sessionId}/guest`);
      known = guest ? { ...guest, username: known && known.user_id === guest.user_id ? known.username : null } : null;
      show(known);
    } catch { /* offline for a moment: keep what is shown */ }
  }

  invite.addEventListener("click", async () => {
    const username = input.value.trim();
    if (!username) { input.focus(); return; }
    invite.disabled = true;
    try {
      const made = await api(`/api/sessions/${sessionId}/guest`, { method: "POST", body: { username } });
      known = { user_id: made.user_id, username: made.username, connected: false, on_air: false };
      const url = new URL(made.page, location.href).href;
      link.replaceChildren(t("guest_share"), " ", h("a", { href: url, id: "guest-page-link" }, url));
      show(known);
    } catch (err) {
      status.textContent = serverText(err.code, err.message) || t("error");
    } finally {
      invite.disabled = false;
    }
  });

  end.addEventListener("click", async () => {
    end.disabled = true;
    try {
      await api(`/api/sessions/${sessionId}/guest`, { method: "DELETE" });
      known = null;
      show(null);
    } catch (err) {
      status.textContent = serverText(err.code, err.message) || t("error");
    } finally {
      end.disabled = false;
    }
  });

  refresh();
  setInterval(refresh, POLL_MS);
}

mountGuestControl();
