// Trust dashboard shell: lists the public read endpoints the server documents today (the trust
// issue fills this page in); says "not available" when there are none.
import { getPaths } from "./capabilities.js";
import { $, h } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();
const wanted = ["/api/dashboard", "/api/trace", "/api/batches", "/api/reviews", "/api/replays", "/api/sessions"];
const paths = (await Promise.all(wanted.map((p) => getPaths(p)))).flat();
$("#endpoints").replaceChildren(...paths.map((p) => h("li", {}, h("code", { text: `GET ${p.path}` }), h("span", { class: "muted", text: ` ${p.summary}` }))));
if (!paths.length) {
  $("#message").textContent = t("not_available");
  $("#message").hidden = false;
}
