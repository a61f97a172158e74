// WeChat sends the browser back here with ?code=&state=; this tab proves it began the trip (the
// key it kept) and the server trades the code for a sign-in, joining the invite's community, or
// binds the WeChat person to the signed-in account when the trip was started to link it.
import { api, saveLogin } from "./api.js";
import { $ } from "./dom.js";
import { errorText, landAfterJoin } from "./joined.js";
import { mountShell } from "./shell.js";

mountShell();
const WECHAT = "linli.wechat";

function failed(err) {
  $("#wechat-status").hidden = true;
  $("#wechat-error").textContent = errorText(err);
  $("#wechat-error").hidden = false;
  $("#wechat-retry").hidden = false;
}

async function finish() {
  const query = new URLSearchParams(location.search);
  let started = null;
  try {
    started = JSON.parse(sessionStorage.getItem(WECHAT) || "null");
  } catch {
    started = null;
  }
  sessionStorage.removeItem(WECHAT);
  const code = query.get("code");
  const state = query.get("state");
  // No code: the person declined in WeChat. No key: this tab did not start the trip.
  if (!code || !state || !started || started.state !== state) {
    failed({ code: code ? "oauth_state_invalid" : "wechat_refused" });
    return;
  }
  try {
    const result = await api("/api/auth/wechat/callback", {
      method: "POST", auth: false, body: { code, state, browser_key: started.browser_key },
    });
    saveLogin(result);
    // Linking WeChat to her account (绑定微信) goes back to where she asked for it.
    if (result.linked) location.assign(started.next && started.next.startsWith("/") ? started.next : "/orders");
    else landAfterJoin(result);
  } catch (err) {
    failed(err);
  }
}

finish();
