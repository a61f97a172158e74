// Rendering shared by the live room, the host console and the moderation console: the pinned
// product card, group-buy bars and question rows. DOM APIs only; user text is always textContent.
import { api } from "./api.js";
import { clear, h, yuan } from "./dom.js";
import { t } from "./i18n.js";

/** A product name from whatever shape the pin carries. */
export function productName(pinned) {
  if (!pinned) return "";
  const snap = pinned.snapshot || {};
  return pinned.name || snap.name || pinned.product_name || (pinned.product && pinned.product.name) || "";
}

const evidenceCache = new Map();

/** The pin plus its batch and newest QC (from the trust API) when the pin itself lacks them. */
export async function withEvidence(pinned) {
  if (!pinned || evidenceOf(pinned).batch || !pinned.batch_id) return pinned;
  if (!evidenceCache.has(pinned.batch_id)) {
    evidenceCache.set(pinned.batch_id, (async () => {
      const batch = await api(`/api/batches/${pinned.batch_id}`, { auth: false });
      try {
        return await api(`/api/batches/${encodeURIComponent(batch.code)}/summary`, { auth: false });
      } catch {
        return { batch };
      }
    })().catch(() => ({})));
  }
  return { ...pinned, evidence: await evidenceCache.get(pinned.batch_id) };
}

function evidenceOf(pinned) {
  return pinned.evidence || (pinned.snapshot && pinned.snapshot.evidence) || pinned.summary || {};
}

function qcSummary(pinned) {
  const qc = evidenceOf(pinned).qc || pinned.qc || null;
  if (!qc) return "";
  if (typeof qc === "string") return qc;
  return qcLine(qc);
}

/** One QC report in a line: conclusion, then up to six measurements with ✓/✗. */
export function qcLine(report) {
  if (!report) return "";
  if (typeof report === "string") return report;
  const parts = [];
  const verdict = { pass: t("qc_pass"), fail: t("qc_fail") }[report.conclusion] || report.conclusion || report.result;
  const head = [report.lab || report.tester, verdict].filter(Boolean).join(" ");
  if (head) parts.push(head);
  for (const m of (report.measurements || []).slice(0, 6)) {
    const mark = m.passed === true ? "✓" : m.passed === false ? "✗" : "";
    parts.push(`${m.name || m.kind} ${m.value ?? ""}${m.unit || ""}${mark}`);
  }
  return parts.join(" · ");
}

function batchLine(pinned) {
  const batch = evidenceOf(pinned).batch || pinned.batch || null;
  const code = (batch && batch.code) || pinned.batch_code || "";
  if (!code) return "";
  const bits = [`${t("batch")} ${code}`];
  if (batch && batch.farm) bits.push(batch.farm);
  if (batch && batch.plot) bits.push(batch.plot);
  if (batch && batch.harvested_at) bits.push(String(batch.harvested_at).slice(0, 10));
  return bits.join(" · ");
}

/** Batch line, batch code and QC line of a pin or replay chapter (after withEvidence). */
export function evidenceLines(item) {
  const batch = evidenceOf(item).batch || item.batch || null;
  return { batch: batchLine(item), code: (batch && batch.code) || item.batch_code || "", qc: qcSummary(item) };
}

/** Fill the 讲解中 card; hide it when nothing is pinned. Batch code links to its trace page. */
export function renderPin(card, pinned) {
  card.hidden = !pinned;
  if (!pinned) return;
  card.querySelector("[id$=pin-name]").textContent = productName(pinned);
  const price = pinned.price_fen ?? (pinned.snapshot && pinned.snapshot.price_fen) ?? (pinned.product && pinned.product.price_fen);
  card.querySelector("[id$=pin-price]").textContent = price !== undefined && price !== null ? yuan(price) : "";
  const batchEl = card.querySelector("[id$=pin-batch]");
  const line = batchLine(pinned);
  const batch = evidenceOf(pinned).batch || pinned.batch || null;
  const code = (batch && batch.code) || pinned.batch_code;
  clear(batchEl);
  if (line && code) batchEl.append(h("a", { href: `/trace/${encodeURIComponent(code)}`, text: line }));
  else batchEl.textContent = line;
  const qc = qcSummary(pinned);
  const qcEl = card.querySelector("[id$=pin-qc]");
  qcEl.textContent = qc ? `${t("qc_report")}: ${qc}` : "";
}

/** Group-buy progress with its "再有N位成团" line; a <progress> per community. */
export function groupLabel(group) {
  const name = group.community_name || group.community || group.name || `#${group.community_id ?? group.group_id}`;
  const count = Number(group.count ?? group.progress ?? group.people ?? group.units ?? 0);
  const threshold = Number(group.threshold ?? group.target ?? 0);
  const left = Math.max(0, threshold - count);
  const done = group.status === "succeeded" || group.status === "success" || (threshold > 0 && left === 0);
  const tail = done ? t("group_done") : t("group_more", { n: left });
  return { text: t("group_line", { name, count, threshold, tail }), count, threshold, done };
}

/** One row per community; `mine` (a community id) is marked and gets `onJoin` as a 参团 button. */
export function renderGroups(section, list, groups, { mine = null, onJoin = null } = {}) {
  section.hidden = !groups || groups.length === 0;
  if (section.hidden) return;
  const fragment = document.createDocumentFragment();
  const ordered = [...groups].sort((a, b) => Number(b.community_id === mine) - Number(a.community_id === mine));
  for (const group of ordered) {
    const label = groupLabel(group);
    const isMine = mine !== null && group.community_id === mine;
    const classes = ["group", label.done ? "done" : "", isMine ? "mine" : ""].filter(Boolean).join(" ");
    const join = isMine && onJoin && group.status !== "failed"
      ? h("button", { type: "button", class: "primary join-group", text: t("group_join"), on: { click: onJoin } }) : null;
    fragment.append(h("li", { class: classes, dataset: { groupId: String(group.group_id ?? "") } },
      h("div", { class: "group-row" },
        h("span", { class: "group-label" }, label.text,
          isMine ? h("span", { class: "mine-badge", text: t("my_community") }) : null),
        join),
      h("progress", { max: String(Math.max(1, label.threshold)), value: String(Math.min(label.count, Math.max(1, label.threshold))),
        "aria-label": label.text })));
  }
  list.replaceChildren(fragment);
}

/** A question row: text, asker, votes, and the answer when there is one. */
export function questionRow(question, { extra = null, pending = false } = {}) {
  const user = question.user || {};
  const asker = typeof user === "string" ? user : user.display_name || user.name || user.username || "";
  const row = h("li", { class: "question", dataset: { id: String(question.id), status: question.status || "" } },
    h("p", { class: "question-text" },
      h("span", { class: "question-id", text: `#${question.id} ` }),
      h("span", { class: "q", text: question.text || "" }),
      pending ? h("span", { class: "pending-badge", text: t("pending_review") }) : null),
    h("p", { class: "muted question-meta" },
      h("span", { class: "asker", text: asker }),
      typeof user === "object" && user.badge ? h("span", { class: "koc-badge", text: String(user.badge) }) : null,
      question.product_name ? h("span", { class: "q-product", text: ` · ${question.product_name}` }) : null,
      h("span", { class: "votes", text: ` · ▲ ${question.votes ?? question.upvotes ?? 0}` })));
  if (question.answer) {
    row.append(h("p", { class: "answer" }, h("b", { text: `${t("answer")}: ` }),
      h("span", { class: "answer-text", text: question.answer })));
  }
  if (question.pinned) row.classList.add("pinned");
  if (pending) row.classList.add("pending");
  if (extra) row.append(extra);
  return row;
}
