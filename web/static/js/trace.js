// Batch trace (the QR code's target): origin, QC reports, the journey, and whether the hash
// chain verifies. Shows "not available" while the trust API is absent.
import { api } from "./api.js";
import { has } from "./capabilities.js";
import { $, h, localTime } from "./dom.js";
import { t } from "./i18n.js";
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
    if (value === null || value === undefined || typeof value === "object") continue;
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
  const batch = trace.batch || trace;
  const events = trace.events || trace.trace || [];
  const reports = trace.qc_reports || trace.qc || [];
  section.replaceChildren(
    h("h2", { text: batch.product_name || batch.farm || code }), fields(batch),
    h("h2", { text: t("qc_report") }),
    h("ul", {}, ...reports.slice(0, 50).map((r) => h("li", { text: [r.title || r.kind, r.result || r.summary, localTime(r.tested_at || r.created_at)].filter(Boolean).join(" · ") }))),
    h("ol", { class: "trace-events" }, ...events.slice(0, 200).map((e) => h("li", { text: [e.kind || e.type, e.place || e.location, localTime(e.at || e.created_at), e.note || ""].filter(Boolean).join(" · ") }))));
  section.hidden = false;
  if (await has("get", "/api/trace/{batch_code}/verify")) {
    try {
      const verdict = await api(`/api/trace/${encodeURIComponent(code)}/verify`, { auth: false });
      const ok = verdict.ok ?? verdict.valid;
      section.append(h("p", { class: ok ? "ok" : "error", text: ok ? "✓ 链上记录完整 / chain verified" : "✗ 记录被改动 / chain broken" }));
    } catch { /* verification is a bonus */ }
  }
}

load();
