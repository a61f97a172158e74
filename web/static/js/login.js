// Sign in, keep the bearer token in localStorage, go back where the visitor came from.
import { api, saveLogin } from "./api.js";
import { $ } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();

// Browsers drop tabs and newlines anywhere in a URL and trim leading control characters and
// spaces, and read "\" as "/": "\t//evil", "/\n/evil" and "/\\evil" all mean "//evil", another
// site. So any of them refuses the whole value (a path of ours never has one).
const UNSAFE = /[\u0000-\u0020\u007f-\u009f\\\u00a0\u1680\u2000-\u200f\u2028\u2029\u202f\u205f\u3000\ufeff]/;

/** Only a path of this site: a crafted ?next= must not send people to another one. */
export function safeNext(raw) {
  const next = raw || "/";
  if (!next.startsWith("/") || next.startsWith("//") || UNSAFE.test(next)) return "/";
  // Whatever the string looked like, the URL the browser would go to must be on this origin.
  const target = new URL(next, location.origin);
  return target.origin === location.origin ? target.pathname + target.search + target.hash : "/";
}

function nextPath() {
  return safeNext(new URLSearchParams(location.search).get("next"));
}

$("#login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const error = $("#login-error");
  error.hidden = true;
  $("#login-submit").disabled = true;
  try {
    const data = await api("/api/auth/token", {
      method: "POST", auth: false,
      body: { username: $("#username").value.trim(), password: $("#password").value },
    });
    saveLogin(data);
    location.assign(nextPath());
  } catch (err) {
    error.textContent = `${t("login_failed")}: ${err.message}`;
    error.hidden = false;
  } finally {
    $("#login-submit").disabled = false;
  }
});
