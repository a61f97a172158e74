// REST calls with the bearer token from login; errors come back as ApiError with the server's
// stable code so pages can show the right words (sold_out → 已售罄).
const TOKEN = "linli.token";
const USER = "linli.user";

import { serverText } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    // One language at a time: the server's bilingual text is cut to the page's language.
    super(serverText(code, message) || code);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function token() {
  return localStorage.getItem(TOKEN);
}

export function currentUser() {
  try {
    return JSON.parse(localStorage.getItem(USER) || "null");
  } catch {
    return null;
  }
}

export function saveLogin(data) {
  localStorage.setItem(TOKEN, data.token);
  localStorage.setItem(USER, JSON.stringify(data.user || null));
}

export function logout() {
  localStorage.removeItem(TOKEN);
  localStorage.removeItem(USER);
}

/** Send the visitor to /login and back here afterwards. */
export function goLogin() {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

/** True when signed in; otherwise redirects to the login page and returns false. */
export function requireLogin() {
  if (token()) return true;
  goLogin();
  return false;
}

export async function api(path, { method = "GET", body, headers = {}, auth = true } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  const bearer = token();
  if (auth && bearer) init.headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", String(err));
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401 && auth && bearer) logout();
    throw new ApiError(response.status, error.code || `http_${response.status}`, error.message, error);
  }
  return data;
}

/** A fresh Idempotency-Key: retries of the same click reuse it, a new click gets a new one. */
export function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
