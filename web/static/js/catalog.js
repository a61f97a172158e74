// /catalog: the host's products (photos, list price in yuan, batch, claim policy such as 坏一赔十),
// batches (origin, plot, harvest time) with their printable QR labels, QC reports with photo or
// PDF and measured values, and trace events (packed, shipped, cold-chain reading, arrived).
import { api } from "./api.js";
import { $, h, localTime, toFen, yuan } from "./dom.js";
import { t } from "./i18n.js";
import { errorMessage, isoToLocalInput, localInputToIso, requireOwner, say, upload } from "./backoffice.js";
import { mountShell } from "./shell.js";

mountShell();
const state = { products: [], batches: [], editing: null };
const NUMERALS = ["", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十"];

function multiplierText(n) {
  return n === 1 ? t("bo_mult_1") : t("bo_mult_n", { cn: NUMERALS[n], n });
}

function batchCode(id) {
  const found = state.batches.find((b) => b.id === id);
  return found ? found.code : "";
}

function policyForm(product, policy) {
  const id = product.id;
  const days = h("input", { type: "number", id: `pol-days-${id}`, min: "0", max: "30", inputmode: "numeric",
    value: String(policy ? policy.max_days_after_pickup : 2) });
  const photo = h("input", { type: "checkbox", id: `pol-photo-${id}`, checked: policy ? policy.require_photo : true });
  const mult = h("select", { id: `pol-mult-${id}` },
    ...Array.from({ length: 10 }, (_, i) => h("option", { value: String(i + 1), text: multiplierText(i + 1),
      selected: (policy ? policy.multiplier : 1) === i + 1 })));
  const status = h("p", { id: `pol-status-${id}`, role: "status", "aria-live": "polite", hidden: true });
  const form = h("form", { class: "policy stack", dataset: { product: String(id) } },
    h("h4", { text: t("bo_policy") }),
    h("div", { class: "row wrap" },
      h("label", { class: "grow", for: `pol-days-${id}` }, h("span", { text: t("bo_policy_days") }), days),
      h("label", { class: "grow", for: `pol-mult-${id}` }, h("span", { text: t("bo_policy_mult") }), mult)),
    h("label", { class: "check", for: `pol-photo-${id}` }, photo, h("span", { text: t("bo_policy_photo") })),
    h("button", { type: "submit", class: "primary", "aria-label": `${t("bo_policy_save")} ${product.name}` }, t("bo_policy_save")),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const saved = await api(`/api/products/${id}/claim-policy`, { method: "PUT", body: {
        max_days_after_pickup: Number(days.value), require_photo: photo.checked, multiplier: Number(mult.value) } });
      say(`#pol-status-${id}`, t("bo_policy_saved", { rule: multiplierText(saved.multiplier) }));
    } catch (err) {
      say(`#pol-status-${id}`, errorMessage(err), "error");
    }
  });
  return form;
}

async function productCard(p) {
  const policy = await api(`/api/products/${p.id}/claim-policy`, { auth: false }).catch(() => null);
  const current = policy && policy.multiplier ? policy : null;
  const code = batchCode(p.batch_id);
  return h("li", { class: "card product", dataset: { id: String(p.id) } },
    h("div", { class: "photos" }, ...(p.photos || []).slice(0, 3).map((url, i) =>
      h("img", { class: "thumb", src: url, alt: `${p.name} ${i + 1}` }))),
    h("h3", { text: p.name }),
    h("p", {}, h("span", { class: "price", text: `${yuan(p.price_fen)}/${p.unit}` }),
      code ? h("span", { class: "muted", text: ` · ${t("bo_batch")} ${code}` }) : null),
    h("button", { type: "button", "aria-label": `${t("bo_edit")} ${p.name}`, on: { click: () => editProduct(p) } }, t("bo_edit")),
    policyForm(p, current));
}

function labelCard(b) {
  const qr = `/api/batches/${encodeURIComponent(b.code)}/qr.svg`;
  const print = () => {
    for (const el of document.querySelectorAll(".qr-label.printing")) el.classList.remove("printing");
    label.classList.add("printing");
    document.body.classList.add("print-label");
    window.print();
  };
  const label = h("figure", { class: "qr-label", dataset: { code: b.code } },
    h("img", { src: qr, alt: t("bo_qr_of", { code: b.code }), width: "160", height: "160" }),
    h("figcaption", {}, h("b", { text: b.code }), h("span", { text: b.farm || "" }),
      h("span", { class: "scan-hint", text: t("bo_scan_to_trace") })));
  return h("li", { class: "card batch", dataset: { code: b.code } },
    h("h3", { text: b.code }),
    h("dl", { class: "facts" },
      h("dt", { text: t("bo_farm") }), h("dd", { text: b.farm || "—" }),
      h("dt", { text: t("bo_plot") }), h("dd", { text: b.plot || "—" }),
      h("dt", { text: t("bo_harvested") }), h("dd", { text: b.harvested_at ? localTime(b.harvested_at) : "—" })),
    label,
    h("div", { class: "row wrap" },
      h("button", { type: "button", class: "print-label-btn", "aria-label": `${t("bo_print_label")} ${b.code}`,
        on: { click: print } }, t("bo_print_label")),
      h("a", { class: "button-link", href: `/trace/${encodeURIComponent(b.code)}`, text: t("bo_open_trace") })));
}

async function render() {
  const cards = await Promise.all(state.products.map(productCard));
  $("#products").replaceChildren(...cards);
  $("#no-products").hidden = cards.length > 0;
  $("#batches").replaceChildren(...state.batches.map(labelCard));
  $("#no-batches").hidden = state.batches.length > 0;
  const options = () => state.batches.map((b) => h("option", { value: b.code, text: `${b.code} ${b.farm || ""}` }));
  for (const select of document.querySelectorAll(".batch-select")) {
    const keep = select.value;
    select.replaceChildren(...options());
    if (keep) select.value = keep;
  }
  const keep = $("#p-batch").value;
  $("#p-batch").replaceChildren(h("option", { value: "", text: t("bo_no_batch") }),
    ...state.batches.map((b) => h("option", { value: String(b.id), text: b.code })));
  $("#p-batch").value = keep;
}

async function reload() {
  [state.products, state.batches] = await Promise.all([api("/api/products"), api("/api/batches")]);
  state.batches.reverse();
  await render();
}

function editProduct(p) {
  state.editing = p.id;
  $("#p-form-title").textContent = t("bo_edit_product", { name: p.name });
  $("#p-name").value = p.name;
  $("#p-price").value = (p.price_fen / 100).toFixed(2);
  $("#p-unit").value = p.unit;
  $("#p-batch").value = p.batch_id ? String(p.batch_id) : "";
  $("#p-desc").value = p.description || "";
  $("#p-save").textContent = t("bo_save");
  $("#p-cancel").hidden = false;
  $("#p-name").focus();
}

function resetProduct() {
  state.editing = null;
  $("#product-form").reset();
  $("#p-form-title").textContent = t("bo_new_product");
  $("#p-save").textContent = t("bo_product_save");
  $("#p-cancel").hidden = true;
}

async function uploadAll(input, purpose) {
  const ids = [];
  for (const file of input.files) ids.push((await upload(file, purpose)).id);
  return ids;
}

async function submitting(button, statusSel, work) {
  button.disabled = true;
  try {
    say(statusSel, await work());
  } catch (err) {
    say(statusSel, errorMessage(err), "error");
  } finally {
    button.disabled = false;
  }
}

function saveProduct(event) {
  event.preventDefault();
  return submitting($("#p-save"), "#p-status", async () => {
    const price = toFen($("#p-price").value);
    if (price === null) throw new Error(t("bo_bad_price"));
    const batch = $("#p-batch").value;
    const body = { name: $("#p-name").value.trim(), price_fen: price, unit: $("#p-unit").value.trim(),
      description: $("#p-desc").value, batch_id: batch ? Number(batch) : null };
    const photos = await uploadAll($("#p-photos"), "product");
    const editing = state.editing;
    if (editing === null) {
      await api("/api/products", { method: "POST", body: { ...body, photo_upload_ids: photos } });
    } else {
      if (photos.length) body.photo_upload_ids = photos;
      await api(`/api/products/${editing}`, { method: "PATCH", body });
    }
    resetProduct();
    await reload();
    return t(editing === null ? "bo_product_listed" : "bo_saved");
  });
}

function saveBatch(event) {
  event.preventDefault();
  return submitting($("#b-save"), "#b-status", async () => {
    const code = $("#b-code").value.trim();
    await api("/api/batches", { method: "POST", body: { code, farm: $("#b-farm").value.trim(),
      plot: $("#b-plot").value.trim(), harvested_at: localInputToIso($("#b-harvest").value),
      description: $("#b-desc").value } });
    $("#batch-form").reset();
    await reload();
    $("#qc-batch").value = code;
    $("#tr-batch").value = code;
    return t("bo_batch_saved", { code });
  });
}

function measurements() {
  const found = [];
  for (const [id, kind] of [["#qc-pesticide", "pesticide_quick_test"], ["#qc-brix", "brix"], ["#qc-acidity", "acidity"]]) {
    const raw = $(id).value;
    if (raw !== "") found.push({ kind, value: Number(raw) });
  }
  return found;
}

function saveQc(event) {
  event.preventDefault();
  return submitting($("#qc-save"), "#qc-status", async () => {
    const values = measurements();
    if (values.length === 0) throw new Error(t("bo_need_measurement"));
    const code = $("#qc-batch").value;
    const attachments = await uploadAll($("#qc-files"), "qc");
    const body = { tester: $("#qc-tester").value.trim(), lab: $("#qc-lab").value.trim(),
      tested_at: localInputToIso($("#qc-when").value), summary: $("#qc-summary").value,
      measurements: values, attachments };
    if ($("#qc-conclusion").value) body.conclusion = $("#qc-conclusion").value;
    await api(`/api/batches/${encodeURIComponent(code)}/qc-reports`, { method: "POST", body });
    $("#qc-form").reset();
    $("#qc-batch").value = code;
    return t("bo_qc_saved", { code });
  });
}

function saveTrace(event) {
  event.preventDefault();
  return submitting($("#tr-save"), "#tr-status", async () => {
    const code = $("#tr-batch").value;
    const kind = $("#tr-kind").value;
    const num = (id) => ($(id).value === "" ? null : Number($(id).value));
    const body = { kind, location: $("#tr-location").value.trim(), note: $("#tr-note").value.trim(),
      carrier: $("#tr-carrier").value.trim(), tracking_no: $("#tr-tracking").value.trim(),
      temperature_c: num("#tr-temp"), humidity_pct: num("#tr-hum") };
    const when = localInputToIso($("#tr-when").value);
    if (when) body.occurred_at = when;
    if (kind === "cold_chain" && body.temperature_c === null) throw new Error(t("bo_need_temperature"));
    await api(`/api/batches/${encodeURIComponent(code)}/trace-events`, { method: "POST", body });
    $("#trace-form").reset();
    $("#tr-batch").value = code;
    return t("bo_trace_saved", { code });
  });
}

async function load() {
  if (!requireOwner()) return;
  $("#product-form").addEventListener("submit", saveProduct);
  $("#p-cancel").addEventListener("click", resetProduct);
  $("#batch-form").addEventListener("submit", saveBatch);
  $("#qc-form").addEventListener("submit", saveQc);
  $("#trace-form").addEventListener("submit", saveTrace);
  $("#qc-when").value = isoToLocalInput(new Date().toISOString());
  window.addEventListener("afterprint", () => document.body.classList.remove("print-label"));
  $("#owner-only").hidden = false;
  await reload();
}

load().catch((err) => say("#denied", errorMessage(err), "error"));
