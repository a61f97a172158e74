// How a 晒单 and a 品鉴官 badge look wherever they are shown: the batch's trace page, the
// product's trust sheet in the live room, a neighbour's profile. User text is textContent only.
import { h, localTime } from "./dom.js";
import { t } from "./i18n.js";

/** The badge beside a member's name (nothing for everyone else). */
export function badgeChip(badge) {
  return badge ? h("span", { class: "koc-badge", text: badge }) : null;
}

export function postCard(post) {
  return h("li", { class: "ugc-post", dataset: { id: String(post.id) } },
    h("p", { class: "ugc-author" },
      post.author_id ? h("a", { href: `/u/${post.author_id}`, text: post.author || "" }) : h("span", { text: post.author || "" }),
      badgeChip(post.badge),
      h("span", { class: "muted", text: ` · ${t(post.from_sample ? "ugc_from_sample" : "ugc_verified_order")}` })),
    h("p", { class: "ugc-text", text: post.text || "" }),
    (post.photos || []).length ? h("div", { class: "ugc-photos" }, post.photos.slice(0, 9).map((src) =>
      h("img", { src, alt: t("ugc_photo"), loading: "lazy", width: "96", height: "96" }))) : null,
    post.video ? h("video", { class: "ugc-video", src: post.video, controls: true, preload: "metadata",
      playsinline: true, "aria-label": t("ugc_video") }) : null,
    post.created_at ? h("p", { class: "muted", text: localTime(post.created_at) }) : null);
}

/** A titled list of approved 晒单, or the words for none yet. */
export function postsSection(items, headingId, level = "h2") {
  return h("section", { class: "ugc-section", "aria-labelledby": headingId },
    h(level, { id: headingId, text: t("ugc_title") }),
    items.length ? h("ul", { class: "ugc-list" }, items.slice(0, 30).map(postCard))
      : h("p", { class: "muted", text: t("ugc_none") }));
}
