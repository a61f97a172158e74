// Batch trace (the QR code's target): origin, QC reports, the journey, and whether the hash
// chain verifies. Shows "not available" while the trust API is absent.
import { api } from "./api.js";
import { has } from "./capabilities.js";
import { $, h, localTime } from "./dom.js";
import { t } from "./i18n.js";
import { qcLine } from "./room_view.js";
import { mountShell } from "./shell.js";

mountShell();
const code = decodeURIComponent(location.pathname.split("/").pop() || "");
$("#code").textContent = code;

function say(text) {
  $("#message").textContent = text;
  $("#message").hidden = false;
}

function fields(obj) {
  const dl = h("dl", { class: "fields" });
  for (const [key, value] of Object.entries(obj || {})) {
    if (value === null || value === undefined || value === "" || typeof value === "object") continue;
    dl.append(h("dt", { text: key }), h("dd", { text: String(value) }));
  }
  return dl;
}

async function load() {
  if (!(await has("get", "/api/trace/{batch_code}"))) return say(t("not_available"));
  let trace;
  try {
    trace = await api(`/api/trace/${encodeURIComponent(code)}`, { auth: false });
  } catch (err) {
    return say(err.status === 404 ? t("not_found") : `${t("error")}: ${err.message}`);
  }
  const section = $("#trace");
  const batch = trace.batch || {};
  const events = trace.journey || [];
  const reports = trace.qc_reports || [];
  const products = trace.products || [];
  section.replaceChildren(
    h("h2", { text: [batch.farm, batch.plot].filter(Boolean).join(" · ") || code }),
    fields({ [t("batch")]: batch.code, [t("farm")]: batch.farm, [t("plot")]: batch.plot,
             [t("harvested")]: localTime(batch.harvested_at), [t("lookups")]: trace.lookups }),
    products.length ? h("p", {}, ...products.slice(0, 20).map((p) => h("span", { class: "badge", text: p.name }))) : null,
    h("h2", { text: t("qc_report") }),
    h("ul", { class: "qc-reports" }, ...reports.slice(0, 50).map((r) => h("li", { text: `${localTime(r.tested_at)} · ${qcLine(r)}` }))),
    h("h2", { text: t("trace_journey") }),
    h("ol", { class: "trace-events" }, ...events.slice(0, 200).map((e) => h("li", {
      text: [e.label || e.kind, e.location, localTime(e.occurred_at), e.note].filter(Boolean).join(" · ") }))));
  section.hidden = false;
  if (await has("get", "/api/trace/{batch_code}/verify")) {
    try {
      const verdict = await api(`/api/trace/${encodeURIComponent(code)}/verify`, { auth: false });
      const ok = verdict.ok === true;
      section.append(h("p", { class: ok ? "ok verify" : "error verify", text: t(ok ? "trace_ok" : "trace_broken") }));
    } catch { /* verification is a bonus */ }
  }
}

load();
