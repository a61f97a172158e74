// Assistants approve or hide 晒单. Approval publishes the post in its batch's trust archive
// and earns its author points (once, whatever is clicked twice); hiding takes them back.
import { api, currentUser, requireLogin, token } from "./api.js";
import { $, h } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";
import { postCard } from "./ugc_view.js";

mountShell();

function say(text, ok) {
  const out = $("#message");
  out.textContent = text;
  out.className = ok ? "ok" : "error";
}

/** A waiting 晒单's files are private until approval: fetched with the token into blob: URLs
 * (an <img> or <video> sends no Authorization header). */
function privateMedia(li) {
  for (const el of li.querySelectorAll(".ugc-photos img, video.ugc-video")) {
    const url = el.getAttribute("src");
    el.removeAttribute("src");
    fetch(url, { headers: { Authorization: `Bearer ${token()}` } })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((blob) => { el.src = URL.createObjectURL(blob); })
      .catch(() => { el.hidden = true; });
  }
}

function row(post) {
  const li = postCard(post);
  if (post.status !== "approved") privateMedia(li);
  if (post.filtered) li.append(h("p", { class: "muted", text: t("ugc_was_filtered") }));
  const bar = h("div", { class: "toolbar" });
  const act = (action, label, cls) => {
    const button = h("button", { type: "button", class: cls, text: t(label) });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(`/api/ugc/posts/${post.id}/${action}`, { method: "POST" });
        say(t(action === "approve" ? "ugc_approved" : "ugc_hidden"), true);
        li.remove();
      } catch (err) {
        button.disabled = false;
        say(err.message, false);
      }
    });
    return button;
  };
  if (post.status !== "approved") bar.append(act("approve", "ugc_approve", "primary ugc-approve"));
  if (post.status !== "hidden") bar.append(act("hide", "ugc_hide", "ugc-hide"));
  li.append(bar);
  return li;
}

async function load() {
  const data = await api(`/api/ugc/queue?status=${encodeURIComponent($("#mod-status").value)}`);
  const items = data.items || [];
  $("#queue").replaceChildren(...items.map(row));
  $("#empty").hidden = items.length > 0;
}

async function main() {
  if (!requireLogin()) return;
  const user = currentUser();
  if (!user || !["assistant", "admin"].includes(user.role)) {
    $("#denied").textContent = t("ugc_mod_denied");
    $("#denied").hidden = false;
    return;
  }
  $("#staff-only").hidden = false;
  $("#mod-status").addEventListener("change", () => load().catch((err) => say(err.message, false)));
  await load().catch((err) => say(err.message, false));
  document.body.dataset.ready = "1";
}

main();
