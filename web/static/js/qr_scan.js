// Reading a buyer's pickup QR with the phone camera. The browser's own BarcodeDetector where it
// has one (Android Chrome, Safari 17+); elsewhere jsQR from the npm registry, loaded on first use.
const JSQR_SRC = "/vendor/jsqr/jsQR.js";
const SCAN_EVERY_MS = 200;
// Frames are scaled down to this width before decoding: enough for a code held up to the
// camera, and decoding stays fast on slow phones.
const MAX_WIDTH = 640;

let jsqrLoading = null;

function loadJsQR() {
  if (window.jsQR) return Promise.resolve(window.jsQR);
  if (!jsqrLoading) {
    jsqrLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = JSQR_SRC;
      script.onload = () => (window.jsQR ? resolve(window.jsQR) : reject(new Error("jsQR missing")));
      script.onerror = () => { jsqrLoading = null; reject(new Error("jsQR failed to load")); };
      document.head.append(script);
    });
  }
  return jsqrLoading;
}

async function nativeDetector() {
  if (!("BarcodeDetector" in window)) return null;
  try {
    const formats = await window.BarcodeDetector.getSupportedFormats();
    return formats.includes("qr_code") ? new window.BarcodeDetector({ formats: ["qr_code"] }) : null;
  } catch {
    return null;
  }
}

/** The text of a QR code drawn on `canvas`, or null. `useNative: false` forces jsQR. */
export async function decodeCanvas(canvas, { useNative = true } = {}) {
  const detector = useNative ? await nativeDetector() : null;
  if (detector) {
    const found = await detector.detect(canvas).catch(() => []);
    if (found.length) return found[0].rawValue;
  }
  const jsQR = await loadJsQR();
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const code = jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
  return code ? code.data : null;
}

/** What a pickup QR holds: {orderId, code}; null for any other text. */
export function parsePickupQr(text) {
  const match = /^LINLI-PICKUP:(\d{1,10}):(\d{4,12})$/.exec(String(text || "").trim());
  return match ? { orderId: Number(match[1]), code: match[2] } : null;
}

/**
 * Show the rear camera in `video` and call `onText` with the first code read; returns stop().
 * Throws when there is no camera or the person refused it.
 */
export async function startScanner(video, onText) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { facingMode: "environment" }, audio: false });
  video.srcObject = stream;
  video.muted = true;
  video.setAttribute("playsinline", "");
  await video.play().catch(() => {});
  const canvas = document.createElement("canvas");
  let stopped = false;
  let timer = null;
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    for (const track of stream.getTracks()) track.stop();
    video.srcObject = null;
  };
  const tick = async () => {
    if (stopped) return;
    if (video.videoWidth > 0) {
      const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
      canvas.width = Math.round(video.videoWidth * scale);
      canvas.height = Math.round(video.videoHeight * scale);
      canvas.getContext("2d", { willReadFrequently: true }).drawImage(video, 0, 0, canvas.width, canvas.height);
      const text = await decodeCanvas(canvas).catch(() => null);
      if (text && !stopped) {
        stop();
        onText(text);
        return;
      }
    }
    timer = setTimeout(tick, SCAN_EVERY_MS);
  };
  tick();
  return stop;
}
