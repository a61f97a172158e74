// /join/{code}: a link from the 小区's WeChat group. Shows whose community and who invites, then
// signs the neighbour up (or in) and joins in one step; WeChat sign-in when the site has it.
import { ApiError, api, currentUser, logout, saveLogin, token } from "./api.js";
import { $, localTime } from "./dom.js";
import { t } from "./i18n.js";
import { errorText, landAfterJoin } from "./joined.js";
import { keptRef } from "./referral.js";
import { mountShell } from "./shell.js";

mountShell();
const code = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const WECHAT = "linli.wechat";

function show(id, visible = true) {
  $(id).hidden = !visible;
}

function fail(id, err) {
  const el = $(id);
  el.textContent = errorText(err);
  el.hidden = false;
}

async function busy(button, work) {
  button.disabled = true;
  try {
    await work();
  } finally {
    button.disabled = false;
  }
}

function showForms(invite) {
  const user = token() ? currentUser() : null;
  if (user) {
    $("#as-user-name").textContent = t("join_as", { name: user.display_name || user.username });
    $("#accept").textContent = t("join_now", { community: invite.community.name });
    show("#as-user");
    return;
  }
  show("#signup");
  show("#wechat-login", Boolean(invite.wechat));
}

async function accept() {
  const ref = keptRef();
  const query = ref ? `?ref=${encodeURIComponent(ref)}` : "";
  landAfterJoin(await api(`/api/invites/${encodeURIComponent(code)}/accept${query}`, { method: "POST" }));
}

async function load() {
  let invite;
  try {
    invite = await api(`/api/invites/${encodeURIComponent(code)}`, { auth: false });
  } catch (err) {
    show("#invite-loading", false);
    fail("#invite-dead", err instanceof ApiError && err.status === 404 ? { code: "invite_not_found" } : err);
    return;
  }
  show("#invite-loading", false);
  $("#invite-from").textContent = t("join_invited_by", { name: invite.inviter.display_name || t("brand") });
  $("#invite-community").textContent = invite.community.name;
  const notes = [t(invite.community.join_policy === "approval" ? "join_policy_approval" : "join_policy_open")];
  if (invite.expires_at) notes.push(t("join_valid_until", { time: localTime(invite.expires_at) }));
  $("#invite-policy").textContent = notes.join(" · ");
  show("#invite-from");
  show("#invite-community");
  show("#invite-policy");
  if (!invite.valid) {
    fail("#invite-dead", { code: `invite_${invite.reason}` });
    return;
  }
  showForms(invite);
}

$("#signup-form").addEventListener("submit", (e) => {
  e.preventDefault();
  show("#signup-error", false);
  busy($("#signup-submit"), async () => {
    try {
      const result = await api("/api/signup", {
        method: "POST", auth: false,
        body: {
          username: $("#su-username").value.trim(), password: $("#su-password").value,
          display_name: $("#su-display").value.trim(), invite_code: code,
          ...(keptRef() ? { ref: keptRef() } : {}),
        },
      });
      saveLogin(result);
      landAfterJoin(result);
    } catch (err) {
      fail("#signup-error", err);
    }
  });
});

$("#signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  show("#signin-error", false);
  busy($("#signin-submit"), async () => {
    try {
      saveLogin(await api("/api/auth/token", {
        method: "POST", auth: false,
        body: { username: $("#si-username").value.trim(), password: $("#si-password").value },
      }));
      await accept();
    } catch (err) {
      fail("#signin-error", err);
    }
  });
});

$("#accept").addEventListener("click", () => {
  show("#accept-error", false);
  busy($("#accept"), async () => {
    try {
      await accept();
    } catch (err) {
      fail("#accept-error", err);
    }
  });
});

$("#switch-user").addEventListener("click", () => {
  logout();
  location.reload();
});

$("#show-signin").addEventListener("click", () => {
  show("#signup", false);
  show("#signin");
  $("#si-username").focus();
});

$("#show-signup").addEventListener("click", () => {
  show("#signin", false);
  show("#signup");
  $("#su-display").focus();
});

$("#wechat-login").addEventListener("click", () => {
  busy($("#wechat-login"), async () => {
    try {
      const started = await api("/api/auth/wechat/start", { method: "POST", auth: false, body: { invite_code: code } });
      // The key stays in this tab: the callback proves the trip began in this browser.
      sessionStorage.setItem(WECHAT, JSON.stringify({ state: started.state, browser_key: started.browser_key }));
      location.assign(started.authorize_url);
    } catch (err) {
      fail("#signup-error", err);
    }
  });
});

load();
