// Live playback: WebRTC (WHEP) while a seat is free, HLS for the crowd (hls.js, or the browser's
// own HLS on Safari/iOS). Keeps retrying quietly while the host is not live yet.
import { MediaHttpError, WhepPlayer } from "./webrtc.js";

let hlsModule = null;
async function loadHls() {
  // Loaded only when needed: most WebRTC viewers never pay for hls.js.
  hlsModule ??= import("/vendor/hls/hls.mjs").then((m) => m.default);
  return hlsModule;
}

function isAppleNative(video) {
  const ua = navigator.userAgent;
  const safari = /^((?!chrome|android|crios|fxios).)*safari/i.test(ua) || /iP(hone|ad|od)/.test(ua);
  return safari && video.canPlayType("application/vnd.apple.mpegurl") !== "";
}

/** hls.js settings of live playback (low-latency HLS, docs/LLHLS.md). `lowLatency: false` is
 * only for comparing with plain HLS (bench/llhls_latency.py). */
export function liveHlsConfig({ lowLatency = true } = {}) {
  // Workers would be blob: scripts, which the page's CSP (script-src 'self') refuses. After a
  // stall (a slow phone, a weak network) hls.js plays up to 1.5x until back at its target
  // distance from live, or every stall would leave the viewer further behind for good.
  return { enableWorker: false, lowLatencyMode: lowLatency, backBufferLength: 30,
           maxLiveSyncPlaybackRate: 1.5 };
}

// Further behind live than this beyond hls.js's target, playing faster would take too long (and
// hls.js does not even try beyond one target duration): jump to the live position instead. A
// player that started slowly (a busy phone) would otherwise stay that far behind.
const MAX_BEHIND_TARGET_S = 3;

/** Keeps a live hls.js player near live; returns a stop() function. */
export function keepNearLive(hls, video) {
  const timer = setInterval(() => {
    const target = hls.targetLatency, position = hls.liveSyncPosition;
    if (video.paused || target == null || position == null) return;
    if (hls.latency > target + MAX_BEHIND_TARGET_S) video.currentTime = position;
  }, 1000);
  return () => clearInterval(timer);
}

/** Attach an HLS URL to a <video>; returns a stop() function. Throws if the playlist is absent. */
export async function attachHls(video, url, { live = true, onFatal } = {}) {
  if (isAppleNative(video)) {
    video.src = url;
    return () => { video.removeAttribute("src"); video.load(); };
  }
  const Hls = await loadHls();
  if (!Hls.isSupported()) {
    video.src = url;
    return () => { video.removeAttribute("src"); video.load(); };
  }
  // Workers would be blob: scripts, which the page's CSP (script-src 'self') refuses.
  const hls = new Hls(live ? liveHlsConfig()
    : { enableWorker: false, lowLatencyMode: false, backBufferLength: 90 });
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
    else onFatal?.(data);
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  const stopSync = live ? keepNearLive(hls, video) : () => {};
  return () => { stopSync(); hls.destroy(); };
}

async function playlistExists(url) {
  try {
    const response = await fetch(url, { method: "GET", cache: "no-store" });
    return response.ok;
  } catch {
    return false;
  }
}

export class LivePlayer {
  /** onMode(mode): "connecting" | "webrtc" | "hls" | "offline". */
  constructor(video, sessionId, { onMode = () => {}, retryMs = 3000 } = {}) {
    this.video = video;
    this.id = sessionId;
    this.onMode = onMode;
    this.retryMs = retryMs;
    this.stopCurrent = null;
    this.timer = 0;
    this.preferHls = false;
    this.stopped = false;
    this.failures = 0;
  }

  async start() {
    this.stopped = false;
    this.onMode("connecting");
    if (!this.preferHls && "RTCPeerConnection" in window) {
      const whep = new WhepPlayer(`/whep/${this.id}`);
      try {
        const stream = await whep.start(() => this.retry());
        if (this.stopped) { whep.stop(); return; }
        this.video.srcObject = stream;
        this.stopCurrent = () => { whep.stop(); this.video.srcObject = null; };
        this.video.play().catch(() => {});
        this.failures = 0;
        this.onMode("webrtc");
        return;
      } catch (err) {
        // Every WebRTC seat is taken: the crowd watches HLS and stays there.
        if (err instanceof MediaHttpError && (err.code === "webrtc_full" || err.status === 503)) this.preferHls = true;
      }
    }
    // With the 360p rendition on, the master playlist names both and hls.js picks by bandwidth.
    const master = `/hls/${this.id}/master.m3u8`;
    const url = (await playlistExists(master)) ? master : `/hls/${this.id}/index.m3u8`;
    if (url === master || await playlistExists(url)) {
      if (this.stopped) return;
      this.stopCurrent = await attachHls(this.video, url, { live: true, onFatal: () => this.retry() });
      this.video.play().catch(() => {});
      this.failures = 0;
      this.onMode("hls");
      return;
    }
    if (this.stopped) return;
    this.onMode("offline");
    this.schedule();
  }

  schedule() {
    clearTimeout(this.timer);
    // Back off while the host is not live (3 s, 4.5 s, … up to 10 s): a room full of waiting
    // neighbours must not poll the server every few seconds each.
    const delay = Math.min(10_000, this.retryMs * 1.5 ** Math.min(this.failures, 10));
    this.failures += 1;
    if (!this.stopped) this.timer = setTimeout(() => this.start(), delay);
  }

  retry() {
    this.teardown();
    this.schedule();
  }

  /** The host just went live (realtime state): try again at once instead of waiting. */
  kick() {
    if (this.stopCurrent) return;
    clearTimeout(this.timer);
    this.start();
  }

  teardown() {
    const stop = this.stopCurrent;
    this.stopCurrent = null;
    if (stop) stop();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.teardown();
  }
}
