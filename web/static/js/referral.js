// A share code (?ref=) a neighbour arrived with is kept in localStorage until her first order:
// handed over at sign-up, at accepting an invite, or (signed in already) on each page she opens.
// The server keeps the first one it is given and refuses any once she has bought (not_new).
import { api, token } from "./api.js";

const STORE = "linli.ref";
const CODE = /^[A-Za-z0-9_-]{8,16}$/;
// Answers after which keeping the code any longer changes nothing.
const SETTLED = new Set(["self", "not_new", "unknown_code"]);

/** The kept share code, or null. */
export function keptRef() {
  const code = localStorage.getItem(STORE);
  return code && CODE.test(code) ? code : null;
}

export function forgetRef() {
  localStorage.removeItem(STORE);
}

/** Keep the page's ?ref= (the first one stands) and, when signed in, hand it to the server. */
export function captureRef() {
  const code = new URLSearchParams(location.search).get("ref");
  if (code && CODE.test(code) && !keptRef()) localStorage.setItem(STORE, code);
  const kept = keptRef();
  if (!kept || !token()) return;
  api("/api/referrals/arrivals", { method: "POST", body: { code: kept } })
    .then((answer) => { if (answer && SETTLED.has(answer.status)) forgetRef(); })
    .catch(() => {});
}
