// Trust dashboard: the metrics per session, farm or community as a table and SVG charts, CSV
// export, and the public read endpoints. Charts and CSV need the bearer token, so they are
// fetched and shown through blob: URLs (img-src allows blob:).
import { api, requireLogin, token } from "./api.js";
import { getPaths, has } from "./capabilities.js";
import { $, h } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();
const blobs = [];

function say(text) {
  $("#message").textContent = text;
  $("#message").hidden = !text;
}

function query() {
  const params = new URLSearchParams({ by: $("#scope").value });
  const days = $("#days").value.trim();
  if (days) params.set("days", days);
  return params.toString();
}

function cell(metric, value) {
  if (value === null || value === undefined) return "–";
  if (metric === "nps") return String(Math.round(Number(value)));
  const n = Number(value);
  return n <= 1 ? `${(n * 100).toFixed(1)}%` : String(n);
}

async function authedBlob(url) {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token()}` } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const blobUrl = URL.createObjectURL(await response.blob());
  blobs.push(blobUrl);
  return blobUrl;
}

async function load() {
  for (const url of blobs.splice(0)) URL.revokeObjectURL(url);
  say("");
  let data;
  try {
    data = await api(`/api/dashboard?${query()}`);
  } catch (err) {
    say(err.status === 403 ? `${t("refused")}: ${err.message}` : `${t("error")}: ${err.message}`);
    return;
  }
  const titles = data.titles || {};
  $("#metrics thead").replaceChildren(h("tr", {}, h("th", { text: t(`by_${data.by}`) }),
    ...data.metrics.map((m) => h("th", { text: titles[m] || m }))));
  $("#metrics tbody").replaceChildren(...data.rows.slice(0, 500).map((row) => h("tr", {},
    h("th", { text: row.label || String(row.key) }),
    ...data.metrics.map((m) => h("td", { text: cell(m, row[m]) })))));
  if (!data.rows.length) say(t("no_sessions"));
  const charts = await Promise.all(Object.entries(data.charts || {}).map(async ([metric, url]) => {
    try {
      return h("img", { src: await authedBlob(url), alt: titles[metric] || metric, class: "chart" });
    } catch {
      return null;
    }
  }));
  $("#charts").replaceChildren(...charts.filter(Boolean));
}

async function endpoints() {
  const wanted = ["/api/dashboard", "/api/trace", "/api/batches", "/api/replays", "/api/sessions"];
  const paths = (await Promise.all(wanted.map((p) => getPaths(p)))).flat();
  $("#endpoints").replaceChildren(...paths.map((p) => h("li", {}, h("code", { text: `GET ${p.path}` }),
    h("span", { class: "muted", text: ` ${p.summary}` }))));
}

$("#scope-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
$("#csv").addEventListener("click", async () => {
  try {
    const link = h("a", { href: await authedBlob(`/api/dashboard.csv?${query()}`), download: `linli-dashboard-${$("#scope").value}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (err) {
    say(`${t("error")}: ${err.message}`);
  }
});

endpoints();
if (!(await has("get", "/api/dashboard"))) {
  say(t("not_available"));
} else if (requireLogin()) {
  load();
}
