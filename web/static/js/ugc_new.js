// Write a 晒单 from My orders: a picked-up order (?order=) or a trial sample (?sample=). Photos
// are checked by the server (type by content, size); the post waits for an assistant.
import { ApiError, api, requireLogin, token } from "./api.js";
import { upload } from "./backoffice.js";
import { $, h, localTime } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();
const MAX_PHOTOS = 9;

function say(text, ok) {
  const out = $("#ugc-result");
  out.textContent = text;
  out.className = ok ? "ok" : "error";
}

function target() {
  const query = new URLSearchParams(location.search);
  const order = Number(query.get("order"));
  const sample = Number(query.get("sample"));
  if (Number.isInteger(order) && order > 0) return { order_id: order };
  if (Number.isInteger(sample) && sample > 0) return { sample_id: sample };
  return null;
}

/** The clip's bytes as the body: the server probes it (MP4, a video stream, ≤ 60 s). */
async function uploadVideo(file) {
  let response;
  try {
    response = await fetch("/api/ugc/videos", { method: "POST", body: file,
      headers: { Authorization: `Bearer ${token()}`, Accept: "application/json", "Content-Type": "video/mp4" } });
  } catch (err) {
    throw new ApiError(0, "network", String(err));
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`, error.message, error);
  }
  return data;
}

async function main() {
  if (!requireLogin()) return;
  const ref = target();
  if (!ref) { say(t("ugc_no_order"), false); return; }
  $("#what").textContent = ref.order_id ? `${t("order_no")} ${ref.order_id}` : t("ugc_for_sample", { id: ref.sample_id });
  const campaigns = await api("/api/ugc/campaigns", { auth: false }).catch(() => ({ items: [] }));
  const now = Date.now();
  const running = (campaigns.items || []).filter((c) => Date.parse(c.starts_at) <= now && now < Date.parse(c.ends_at));
  if (running.length) {
    $("#ugc-campaign").replaceChildren(h("option", { value: "", text: t("ugc_no_campaign") }),
      ...running.map((c) => h("option", { value: String(c.id),
        text: `${c.hashtag} ${c.title} · ${t("ugc_until", { time: localTime(c.ends_at) })}` })));
    $("#campaign-label").hidden = false;
  }
  const input = $("#ugc-photos");
  input.addEventListener("change", () => {
    const files = [...input.files].slice(0, MAX_PHOTOS);
    $("#ugc-preview").replaceChildren(...files.map((f) => h("img", { src: URL.createObjectURL(f), alt: t("ugc_photo"), width: "96", height: "96" })));
  });
  const form = $("#ugc-form");
  form.hidden = false;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const files = [...input.files];
    if (files.length < 1 || files.length > MAX_PHOTOS) { say(t("ugc_need_photo"), false); return; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const photos = [];
      for (const file of files) photos.push((await upload(file, "ugc")).id);
      const campaign = Number($("#ugc-campaign").value) || null;
      const clip = $("#ugc-video").files[0];
      const video = clip ? await uploadVideo(clip) : null;
      const post = await api("/api/ugc/posts", { method: "POST", body: {
        ...ref, text: $("#ugc-text").value.trim(), photos, ...(campaign ? { campaign_id: campaign } : {}),
        ...(video ? { video_id: video.id } : {}) } });
      form.hidden = true;
      say(t(post.filtered ? "ugc_sent_filtered" : "ugc_sent"), true);
    } catch (err) {
      button.disabled = false;
      say(err.code === "conflict" && err.details.reason === "already_posted" ? t("ugc_posted") : err.message, false);
    }
  });
  document.body.dataset.ready = "1";
}

main();
