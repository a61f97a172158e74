// A guest on camera (连线): the invited neighbour opens the camera and publishes it to the host's
// live session over WHIP with her login; the server puts her picture in a corner of the stream.
import { requireLogin, token } from "./api.js";
import { $, pathId } from "./dom.js";
import { serverText, t } from "./i18n.js";
import { mountShell } from "./shell.js";
import { WhipPublisher } from "./webrtc.js";

const sessionId = pathId();
mountShell();

let publisher = null;
let stream = null;

function state(text, kind = "") {
  const el = $("#guest-state");
  el.textContent = text;
  el.className = kind;
  document.body.dataset.guest = kind || "idle";
}

function stopCamera() {
  if (stream) for (const track of stream.getTracks()) track.stop();
  stream = null;
  $("#guest-preview").srcObject = null;
}

function ended(key) {
  if (publisher) publisher.abandon();
  publisher = null;
  stopCamera();
  $("#guest-join").hidden = false;
  $("#guest-leave").hidden = true;
  state(t(key), "ended");
}

async function join() {
  const button = $("#guest-join");
  button.disabled = true;
  state(t("guest_connecting"));
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
      audio: true,
    });
  } catch (err) {
    state(`${t("camera")}: ${err.message}`, "error");
    button.disabled = false;
    return;
  }
  $("#guest-preview").srcObject = stream;
  const next = new WhipPublisher(`/api/sessions/${sessionId}/guest/whip`, token());
  try {
    await next.start(stream, () => publisher === next && ended("guest_ended"));
  } catch (err) {
    next.abandon();
    stopCamera();
    state(serverText(err.code, err.message) || t("error"), "error");
    button.disabled = false;
    return;
  }
  publisher = next;
  next.pc.addEventListener("connectionstatechange", () => {
    const s = next.pc && next.pc.connectionState;
    if (publisher !== next) return;
    if (s === "connected") state(t("guest_on_air"), "on-air");
    else if (s === "closed" || s === "failed") ended("guest_ended");
  });
  button.hidden = true;
  button.disabled = false;
  $("#guest-leave").hidden = false;
}

function main() {
  if (!requireLogin()) return;
  $("#guest-room").href = `/live/${sessionId}`;
  $("#guest-join").addEventListener("click", join);
  $("#guest-leave").addEventListener("click", () => ended("guest_left"));
  state(t("guest_ready"));
}

main();
