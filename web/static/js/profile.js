// A neighbour's public page: her masked name, 品鉴官 badge, honour title and approved 晒单.
// The API sends nothing private (no orders, no points balance, no full name).
import { api } from "./api.js";
import { $, h, pathId } from "./dom.js";
import { lang, t } from "./i18n.js";
import { mountShell } from "./shell.js";
import { badgeChip, postsSection } from "./ugc_view.js";

mountShell();

async function main() {
  let data;
  try {
    data = await api(`/api/u/${pathId()}`, { auth: false });
  } catch (err) {
    $("#message").textContent = err.status === 404 ? t("profile_unknown") : err.message;
    $("#message").hidden = false;
    return;
  }
  $("#name").textContent = data.name;
  const title = data.title ? h("span", { class: "badge ok", text: lang() === "en" ? data.title.en : data.title.zh }) : null;
  $("#chips").replaceChildren(...[title, ...(data.badges || []).map(badgeChip)].filter(Boolean));
  const posts = $("#posts");
  posts.replaceChildren(postsSection(data.posts || [], "profile-ugc"));
  posts.hidden = false;
  document.body.dataset.ready = "1";
}

main();
