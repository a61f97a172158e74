// After joining from an invite link: say where the newcomer stands (已加入 / 待审核) on the page
// they land on, which is the community's live room when one is live, else the home page.
import { setFlash } from "./shell.js";
import { t } from "./i18n.js";

/** Errors the join flow can meet, in the page's language (the server's text is bilingual). */
const KNOWN = ["invite_expired", "invite_revoked", "invite_used_up", "invite_not_found",
  "username_taken", "rate_limited", "oauth_state_invalid", "wechat_refused", "wechat_unavailable",
  "wechat_not_configured", "network"];

export function errorText(err) {
  if (err && err.code === "weak_password") return t(`weak_password_${err.details.reason || "too_guessable"}`);
  if (err && err.code === "validation_failed") {
    const fields = (err.details.fields || []).map((f) => f.field);
    if (fields.includes("username")) return t("username_rules");
    if (fields.includes("password")) return t("password_rule_length");
  }
  if (err && err.code === "unauthorized") return t("login_failed");
  if (err && KNOWN.includes(err.code)) return t(err.code);
  return t("error");
}

/** Go where a newcomer belongs now; the landing page shows the join outcome once. */
export function landAfterJoin(result) {
  if (result.community && result.membership) {
    const key = result.membership.status === "approved" ? "joined_approved" : "joined_pending";
    setFlash(t(key, { community: result.community.name }), result.membership.status === "approved" ? "ok" : "info");
  } else if (result.join_error) {
    setFlash(errorText(result.join_error), "error");
  }
  location.assign(result.live_session_id ? `/live/${result.live_session_id}` : "/");
}
