// The frame every page shares: brand, navigation, sign-in state and the language switch.
import { currentUser, logout, token } from "./api.js";
import { h } from "./dom.js";
import { applyI18n, lang, setLang, t } from "./i18n.js";
import { captureRef } from "./referral.js";

/** Build the top bar into <header id="top">, translate the page, return the signed-in user. */
export function mountShell() {
  const top = document.getElementById("top");
  const user = token() ? currentUser() : null;
  // A 团长 (of any role) gets the community and pickup pages too; the server checks each act.
  const leads = Boolean(user && Array.isArray(user.leads) && user.leads.length);
  if (top) {
    const links = navLinks(user, leads);
    const nav = h("nav", { class: "nav", "data-i18n-aria": "nav_label" },
      h("button", { type: "button", class: "nav-toggle", id: "nav-toggle", "aria-expanded": "false",
                    "aria-controls": "nav-links", "data-i18n": "nav_menu" }),
      h("ul", { class: "nav-links", id: "nav-links" },
        ...links.map(([href, key]) => h("li", {}, h("a", {
          href, "data-i18n": key, "aria-current": href === location.pathname ? "page" : null })))));
    wireMenu(nav);
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
  captureRef();
  return user;
}

/** [href, i18n key] of the pages the user's role may open; the server still checks each act. */
function navLinks(user, leads) {
  const staff = Boolean(user && ["host", "assistant", "admin"].includes(user.role));
  const hosts = Boolean(user && (user.role === "host" || user.role === "admin"));
  return [
    ["/", "nav_home"],
    ["/replays", "nav_replays"],
    user ? ["/orders", "nav_orders"] : null,
    ["/koc", "nav_koc"],
    hosts ? ["/invites", "nav_invites"] : null,
    hosts || leads ? ["/communities", "nav_communities"] : null,
    staff || leads ? ["/pickup", "nav_pickup"] : null,
    hosts ? ["/studio", "nav_studio"] : null,
    hosts ? ["/catalog", "nav_catalog"] : null,
    staff ? ["/claims", "nav_claims"] : null,
    staff ? ["/reviews", "nav_reviews"] : null,
    user ? ["/referrals", "nav_referrals"] : null,
    hosts ? ["/commissions", "nav_commissions"] : null,
  ].filter(Boolean);
}

/** On a narrow screen the links fold behind one button (CSS shows them inline on a wide one):
 * Escape or a tap elsewhere folds them again, and focus goes back to the button on Escape. */
function wireMenu(nav) {
  const button = nav.querySelector(".nav-toggle");
  const setOpen = (open) => {
    button.setAttribute("aria-expanded", open ? "true" : "false");
    nav.classList.toggle("open", open);
  };
  button.addEventListener("click", () => {
    const open = button.getAttribute("aria-expanded") !== "true";
    setOpen(open);
    if (open) nav.querySelector(".nav-links a")?.focus();
  });
  nav.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && nav.classList.contains("open")) {
      setOpen(false);
      button.focus();
    }
  });
  document.addEventListener("click", (e) => {
    if (nav.classList.contains("open") && !nav.contains(e.target)) setOpen(false);
  });
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
