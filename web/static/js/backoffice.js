// What the back-office pages (sessions, catalog) share: who may use them, file uploads, and
// times typed in the browser's zone sent with their offset.
import { ApiError, currentUser, requireLogin, token } from "./api.js";
import { serverText, t } from "./i18n.js";
import { $ } from "./dom.js";

const OWNERS = ["host", "admin"];

/** The signed-in host or admin; anyone else sees the no-permission message and no controls. */
export function requireOwner() {
  if (!requireLogin()) return null;
  const user = currentUser();
  if (user && OWNERS.includes(user.role)) return user;
  const denied = $("#denied");
  denied.textContent = t("bo_denied");
  denied.hidden = false;
  return null;
}

/** Upload one file (checked by content on the server); resolves to {id, url, content_type}. */
export async function upload(file, purpose) {
  let response;
  try {
    response = await fetch(`/api/uploads?purpose=${encodeURIComponent(purpose)}`, {
      method: "POST", body: file,
      headers: { Authorization: `Bearer ${token()}`, Accept: "application/json",
                 "Content-Type": file.type || "application/octet-stream" },
    });
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

const pad = (n) => String(n).padStart(2, "0");

/** "2026-12-04T20:00" typed in a datetime-local field → ISO 8601 with this browser's offset. */
export function localInputToIso(value) {
  if (!value) return null;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return null;
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T`
    + `${pad(date.getHours())}:${pad(date.getMinutes())}:00${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** An ISO time from the wire → the value a datetime-local field shows (the browser's zone). */
export function isoToLocalInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** The server's error in the page's language. */
export function errorMessage(err) {
  if (err && err.message) return err.message;
  return serverText(err && err.code, "") || t("error");
}

/** Show `text` in a form's status line (role=status or alert in the page). */
export function say(selector, text, kind = "ok") {
  const el = $(selector);
  el.textContent = text;
  el.className = kind === "error" ? "error" : "ok";
  el.hidden = !text;
}
