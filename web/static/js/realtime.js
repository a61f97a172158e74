// One Socket.IO connection to a room. The auth payload is rebuilt on every (re)connect so it
// carries the last sequence number seen: the hub then replays exactly what we missed, or tells
// us to reload when that is too old. Event names live in events.js.
import { io } from "/vendor/socket.io/socket.io.esm.min.js";
import { token } from "./api.js";
import { serverText } from "./i18n.js";

const VIEWER_KEY = "linli.viewer";

// A random id kept by this browser, so a viewer who is not signed in counts once per session in
// the shop's audience figures however often the page reconnects or reloads.
function viewerId() {
  try {
    let id = localStorage.getItem(VIEWER_KEY);
    if (!id || !/^[A-Za-z0-9_-]{8,48}$/.test(id)) {
      id = crypto.randomUUID().replaceAll("-", "");
      localStorage.setItem(VIEWER_KEY, id);
    }
    return id;
  } catch {
    return null;
  }
}

export class RoomConnection {
  constructor(namespace, sessionId, { onStatus = () => {} } = {}) {
    this.sessionId = sessionId;
    this.lastSeq = null;
    this.epoch = null;
    this.onStatus = onStatus;
    this.missedSinceReconnect = 0;
    this.reconnecting = false;
    this.socket = io(namespace, {
      path: "/socket.io/",
      transports: ["websocket", "polling"],
      auth: (cb) => {
        const auth = { session_id: sessionId };
        const bearer = token();
        if (bearer) auth.token = bearer;
        else {
          const viewer = viewerId();
          if (viewer) auth.viewer = viewer;
        }
        if (this.lastSeq !== null) {
          auth.last_seq = this.lastSeq;
          if (this.epoch) auth.epoch = this.epoch;
        }
        cb(auth);
      },
      reconnectionDelayMax: 5000,
    });
    this.socket.on("connect", () => {
      const wasReconnecting = this.reconnecting;
      this.reconnecting = false;
      this.onStatus(wasReconnecting ? "reconnected" : "connected");
    });
    this.socket.on("disconnect", (reason) => {
      // Our own close, or the server sending us away (a ban): socket.io does not come back.
      if (reason === "io server disconnect") {
        this.onStatus("closed");
      } else if (reason !== "io client disconnect") {
        this.reconnecting = true;
        this.missedSinceReconnect = 0;
        this.onStatus("reconnecting");
      }
    });
    this.socket.on("connect_error", (err) => {
      // A refusal from the hub carries {code, message} in err.data (e.g. banned, not_found).
      const data = (err && err.data) || {};
      this.onStatus("refused", serverText(data.code, data.message || (err && err.message) || ""), data);
    });
  }

  /** Record the position of an event we processed (payloads carry seq, sometimes epoch). */
  track(payload) {
    const items = Array.isArray(payload) ? payload : [payload];
    for (const item of items) {
      if (!item || typeof item !== "object") continue;
      if (item.epoch && item.epoch !== this.epoch) this.epoch = item.epoch;
      const seq = Number(item.seq);
      if (Number.isFinite(seq) && (this.lastSeq === null || seq > this.lastSeq)) this.lastSeq = seq;
    }
  }

  on(event, handler) {
    this.socket.on(event, (payload, ack) => {
      this.track(payload);
      handler(payload, ack);
    });
  }

  /** Emit and wait for the server's acknowledgement (or a timeout). */
  request(event, payload, timeoutMs = 8000) {
    return new Promise((resolve) => {
      this.socket.timeout(timeoutMs).emit(event, payload, (err, reply) => {
        if (err) resolve({ ok: false, error: { code: "timeout", message: "timeout" } });
        else resolve(reply ?? { ok: true });
      });
    });
  }

  close() {
    this.socket.disconnect();
  }
}

/** A reply from the hub is an error when it says so (shape: {ok:false, error:{code,message}}). */
export function replyError(reply) {
  if (!reply || reply.ok !== false) return null;
  const error = reply.error || { code: "error", message: "" };
  return { ...error, message: serverText(error.code, error.message) };
}
