// The frame every page shares: brand, navigation, sign-in state and the language switch.
import { currentUser, logout, token } from "./api.js";
import { h } from "./dom.js";
import { applyI18n, lang, setLang, t } from "./i18n.js";

/** Build the top bar into <header id="top">, translate the page, return the signed-in user. */
export function mountShell() {
  const top = document.getElementById("top");
  const user = token() ? currentUser() : null;
  // A 团长 (of any role) gets the community and pickup pages too; the server checks each act.
  const leads = Boolean(user && Array.isArray(user.leads) && user.leads.length);
  if (top) {
    const nav = h("nav", { class: "nav" },
      h("a", { href: "/", "data-i18n": "nav_home" }),
      h("a", { href: "/replays", "data-i18n": "nav_replays" }),
      user ? h("a", { href: "/orders", "data-i18n": "nav_orders" }) : null,
      h("a", { href: "/koc", "data-i18n": "nav_koc" }),
      user && (user.role === "host" || user.role === "admin")
        ? h("a", { href: "/invites", "data-i18n": "nav_invites" }) : null,
      user && (user.role === "host" || user.role === "admin" || leads)
        ? h("a", { href: "/communities", "data-i18n": "nav_communities" }) : null,
      user && (["host", "assistant", "admin"].includes(user.role) || leads)
        ? h("a", { href: "/pickup", "data-i18n": "nav_pickup" }) : null,
      user && (user.role === "host" || user.role === "admin")
        ? h("a", { href: "/studio", "data-i18n": "nav_studio" }) : null,
      user && (user.role === "host" || user.role === "admin")
        ? h("a", { href: "/catalog", "data-i18n": "nav_catalog" }) : null,
      user && ["host", "assistant", "admin"].includes(user.role)
        ? h("a", { href: "/claims", "data-i18n": "nav_claims" }) : null,
      user && ["host", "assistant", "admin"].includes(user.role)
        ? h("a", { href: "/reviews", "data-i18n": "nav_reviews" }) : null,
    );
    const who = user
      ? h("span", { class: "who" },
          h("span", { class: "who-name", text: user.display_name || user.username }),
          h("button", { type: "button", class: "link", id: "logout", "data-i18n": "logout",
                        on: { click: () => { logout(); location.reload(); } } }))
      : h("a", { id: "login-link", href: `/login?next=${encodeURIComponent(location.pathname)}`,
                 "data-i18n": "login" });
    const switcher = h("button", {
      type: "button", class: "link", id: "lang-switch", "data-i18n": "lang_switch",
      on: { click: () => { setLang(lang() === "en" ? "zh" : "en"); location.reload(); } },
    });
    top.replaceChildren(h("a", { class: "brand", href: "/", "data-i18n": "brand" }), nav,
      h("span", { class: "spacer" }), who, switcher);
  }
  applyI18n();
  showFlash();
  return user;
}

const FLASH = "linli.flash";

/** A message for the next page this tab opens (e.g. "已加入阳光花园" after joining). */
export function setFlash(text, kind = "ok") {
  sessionStorage.setItem(FLASH, JSON.stringify({ text, kind }));
}

function showFlash() {
  const raw = sessionStorage.getItem(FLASH);
  const main = document.getElementById("app");
  if (!raw || !main) return;
  sessionStorage.removeItem(FLASH);
  let flash = null;
  try {
    flash = JSON.parse(raw);
  } catch {
    return;
  }
  if (!flash || typeof flash.text !== "string") return;
  main.prepend(h("p", { id: "flash", class: `flash flash-${flash.kind === "error" ? "error" : flash.kind === "info" ? "info" : "ok"}`,
                        role: "status", text: flash.text }));
}
