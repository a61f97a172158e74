// Replay list: a poster per session, its title and products; processing ones show progress.
import { api } from "./api.js";
import { $, h, localTime } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();

function card(replay) {
  const id = replay.session_id ?? replay.id;
  const ready = !replay.status || replay.status === "ready" || replay.status === "done";
  const poster = replay.poster || replay.poster_url;
  return h("li", { class: "card replay-card", dataset: { sessionId: String(id) } },
    h("a", { href: `/replays/${id}` },
      poster ? h("img", { src: poster, alt: "", loading: "lazy" }) : null,
      h("b", { text: replay.title || `#${id}` })),
    h("p", { class: "muted", text: [replay.farm, localTime(replay.ended_at || replay.started_at)].filter(Boolean).join(" · ") }),
    ready ? null : h("p", { class: "muted", text: t("processing", { p: Math.round(Number(replay.percent ?? 0)) }) }),
    Array.isArray(replay.chapters) && replay.chapters.length
      ? h("p", { class: "muted", text: replay.chapters.map((c) => c.name || c.product_name || "").filter(Boolean).join(" · ") })
      : null);
}

async function load() {
  let replays = null;
  try {
    const data = await api("/api/replays", { auth: false });
    replays = Array.isArray(data) ? data : data.items || data.replays || [];
  } catch {
    // No replay list yet: ended sessions are the replays to offer.
    const sessions = await api("/api/sessions?status=ended", { auth: false }).catch(() => []);
    replays = sessions.map((s) => ({ ...s, session_id: s.id }));
  }
  $("#replay-list").replaceChildren(...replays.slice(0, 100).map(card));
  $("#empty").hidden = replays.length > 0;
}

load();
