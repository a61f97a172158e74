// Batch trace (the QR code's target): origin, every QC report with its photos, who tested and
// against what limit, the journey with every reading it holds, and whether the hash chain
// verifies. Labels come from the page's language by kind, never from stored bilingual names.
import { api } from "./api.js";
import { has } from "./capabilities.js";
import { $, h, localTime } from "./dom.js";
import { hasKey, t } from "./i18n.js";
import { mountShell } from "./shell.js";
import { postsSection } from "./ugc_view.js";

mountShell();
const code = decodeURIComponent(location.pathname.split("/").pop() || "");
$("#code").textContent = code;

function say(text, ...more) {
  $("#message").replaceChildren(h("p", { text }), ...more);
  $("#message").hidden = false;
}

function fields(pairs) {
  const dl = h("dl", { class: "fields" });
  for (const [key, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(h("dt", { text: key }), h("dd", { text: String(value) }));
  }
  return dl;
}

/** A known kind is named in the page's language; a custom one by the name its tester gave. */
function label(prefix, kind, fallback) {
  return hasKey(`${prefix}${kind}`) ? t(`${prefix}${kind}`) : fallback || kind || "";
}

function number(value) {
  return Number.isInteger(value) ? String(value) : Number(value).toFixed(1).replace(/\.0$/, "");
}

function measurementRow(m) {
  const value = m.value === null || m.value === undefined ? "" : `${number(m.value)}${m.unit || ""}`;
  const verdict = m.passed === true ? t("qc_pass") : m.passed === false ? t("qc_fail") : "";
  const limit = m.threshold ? t("qc_limit_below", { value: number(m.threshold.below), unit: m.threshold.unit }) : "";
  return h("tr", { class: m.passed === false ? "qc-failed" : "" },
    h("th", { scope: "row", text: label("qc_kind_", m.kind, m.name) }),
    h("td", { text: value }),
    h("td", { text: limit }),
    h("td", { class: m.passed === false ? "error" : "ok", text: verdict }));
}

function attachment(file) {
  if (String(file.content_type || "").startsWith("image/")) {
    return h("a", { href: file.url, class: "qc-photo", target: "_blank", rel: "noopener" },
      h("img", { src: file.url, alt: t("qc_photo_alt"), loading: "lazy", width: "160", height: "120" }));
  }
  return h("a", { href: file.url, class: "qc-file", target: "_blank", rel: "noopener", text: t("qc_open_pdf") });
}

function reportCard(r) {
  const verdict = { pass: t("qc_pass"), fail: t("qc_fail") }[r.conclusion] || "";
  return h("article", { class: "qc-report" },
    h("h3", {}, h("span", { text: localTime(r.tested_at) }), " ",
      verdict ? h("span", { class: r.conclusion === "fail" ? "badge warn" : "badge ok", text: verdict }) : null),
    fields([[t("qc_tester"), r.tester], [t("qc_lab"), r.lab], [t("qc_summary"), r.summary]]),
    (r.measurements || []).length
      ? h("table", { class: "qc-table" },
        h("thead", {}, h("tr", {}, ...["qc_item", "qc_value", "qc_limit", "qc_result"].map((k) => h("th", { scope: "col", text: t(k) })))),
        h("tbody", {}, ...r.measurements.slice(0, 30).map(measurementRow)))
      : null,
    (r.attachments || []).length ? h("div", { class: "qc-attachments" }, ...r.attachments.slice(0, 10).map(attachment)) : null);
}

const READINGS = [
  ["temperature_c", (v) => `${number(v)} °C`],
  ["humidity_pct", (v) => `${number(v)}%`],
  ["quantity", (v) => String(v)],
  ["carrier", (v) => String(v)],
  ["tracking_no", (v) => String(v)],
];

function journeyItem(e) {
  const data = e.data || {};
  const readings = READINGS.filter(([key]) => data[key] !== undefined && data[key] !== null && data[key] !== "")
    .map(([key, show]) => [t(`trace_${key}`), show(data[key])]);
  return h("li", { class: `trace-event trace-${e.kind}` },
    h("strong", { text: label("trace_kind_", e.kind, e.kind) }), " ",
    h("time", { datetime: e.occurred_at || "", text: localTime(e.occurred_at) }),
    fields([[t("trace_location"), e.location], ...readings, [t("trace_note"), e.note]]));
}

async function load() {
  if (!(await has("get", "/api/trace/{batch_code}"))) return say(t("not_available"));
  let trace;
  try {
    trace = await api(`/api/trace/${encodeURIComponent(code)}`, { auth: false });
  } catch (err) {
    if (err.status === 404) {
      return say(t("trace_unknown", { code }), h("p", { class: "muted", text: t("trace_unknown_hint") }),
        h("a", { href: "/", class: "button", text: t("back_home") }));
    }
    return say(t("trace_load_failed"));
  }
  const section = $("#trace");
  const batch = trace.batch || {};
  const events = trace.journey || [];
  const reports = trace.qc_reports || [];
  const products = trace.products || [];
  section.replaceChildren(...[
    h("h2", { text: [batch.farm, batch.plot].filter(Boolean).join(" · ") || code }),
    fields([[t("batch"), batch.code], [t("farm"), batch.farm], [t("plot"), batch.plot],
      [t("harvested"), localTime(batch.harvested_at)], [t("lookups"), trace.lookups]]),
    products.length ? h("p", {}, ...products.slice(0, 20).map((p) => h("span", { class: "badge", text: p.name }))) : null,
    h("h2", { text: t("qc_report") }),
    reports.length ? h("div", { class: "qc-reports" }, ...reports.slice(0, 50).map(reportCard))
      : h("p", { class: "muted", text: t("qc_none") }),
    h("h2", { text: t("trace_journey") }),
    h("ol", { class: "trace-events" }, ...events.slice(0, 200).map(journeyItem)),
  ].filter(Boolean));  // replaceChildren would write a null as the text "null"
  section.hidden = false;
  const posts = await api(`/api/batches/${encodeURIComponent(code)}/ugc`, { auth: false }).catch(() => null);
  if (posts) section.append(postsSection(posts.items || [], "trace-ugc"));
  if (await has("get", "/api/trace/{batch_code}/verify")) {
    try {
      const verdict = await api(`/api/trace/${encodeURIComponent(code)}/verify`, { auth: false });
      const ok = verdict.ok === true;
      section.append(h("p", { class: ok ? "ok verify" : "error verify", text: t(ok ? "trace_ok" : "trace_broken") }));
    } catch { /* verification is a bonus */ }
  }
}

load();
