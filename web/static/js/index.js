// Home: live sessions first, then scheduled ones, then the latest ended (→ replay).
import { api, currentUser } from "./api.js";
import { $, h, localTime } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();
const me = currentUser();
const order = { live: 0, scheduled: 1, ended: 2 };

function card(session) {
  const staff = me && (me.role === "admin" || me.id === session.host_id);
  const assistant = me && (me.role === "assistant" || staff);
  const target = session.status === "ended" ? `/replays/${session.id}` : `/live/${session.id}`;
  return h("li", { class: `card session status-${session.status}` },
    h("a", { href: target, class: "session-link" },
      h("span", { class: "badge", text: t(`status_${session.status}`) }),
      h("b", { text: session.title || "" })),
    h("p", { class: "muted", text: [session.farm, localTime(session.scheduled_at || session.started_at)].filter(Boolean).join(" · ") }),
    staff ? h("a", { href: `/host/${session.id}`, text: t("host_title") }) : null,
    assistant ? h("a", { href: `/moderate/${session.id}`, text: ` ${t("mod_title")}` }) : null);
}

try {
  const sessions = await api("/api/sessions", { auth: false });
  sessions.sort((a, b) => (order[a.status] ?? 3) - (order[b.status] ?? 3) || b.id - a.id);
  $("#sessions").replaceChildren(...sessions.slice(0, 50).map(card));
  $("#empty").hidden = sessions.length > 0;
} catch (err) {
  $("#empty").textContent = `${t("error")}: ${err.message}`;
  $("#empty").hidden = false;
}
