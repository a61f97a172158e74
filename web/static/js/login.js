// Sign in, keep the bearer token in localStorage, go back where the visitor came from.
import { api, saveLogin } from "./api.js";
import { $ } from "./dom.js";
import { t } from "./i18n.js";
import { mountShell } from "./shell.js";

mountShell();

/** Only same-site paths: a crafted ?next= must not send people to another site. */
function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
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
