// The host's camera: device picker, preview, WHIP publishing and health from getStats.
import { $ } from "./dom.js";
import { t } from "./i18n.js";
import { WhipPublisher } from "./webrtc.js";

const CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

export class HostCamera {
  constructor(sessionId, streamKey) {
    this.id = sessionId;
    this.key = streamKey;
    this.stream = null;
    this.publisher = null;
    this.statsTimer = 0;
    $("#camera").addEventListener("change", () => this.open());
    $("#microphone").addEventListener("change", () => this.open());
    $("#go-live").addEventListener("click", () => this.goLive());
  }

  error(text) {
    const el = $("#media-error");
    el.textContent = text || "";
    el.hidden = !text;
  }

  async listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const [kind, select] of [["videoinput", $("#camera")], ["audioinput", $("#microphone")]]) {
      const current = select.value;
      const options = devices.filter((d) => d.kind === kind).map((d, i) => {
        const option = document.createElement("option");
        option.value = d.deviceId;
        option.textContent = d.label || `${kind === "videoinput" ? t("camera") : t("microphone")} ${i + 1}`;
        return option;
      });
      select.replaceChildren(...options);
      if (current && options.some((o) => o.value === current)) select.value = current;
    }
  }

  /** (Re)open the chosen devices; a live publisher switches tracks without renegotiating. */
  async open() {
    this.error("");
    const camera = $("#camera").value;
    const mic = $("#microphone").value;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: camera ? { ...CONSTRAINTS, deviceId: { exact: camera } } : CONSTRAINTS,
        audio: mic ? { deviceId: { exact: mic }, echoCancellation: true } : true,
      });
    } catch (err) {
      this.error(`${t("camera")}: ${err.message}`);
      return null;
    }
    const old = this.stream;
    this.stream = stream;
    $("#preview").srcObject = stream;
    if (this.publisher) for (const track of stream.getTracks()) await this.publisher.replaceTrack(track);
    if (old) for (const track of old.getTracks()) track.stop();
    if (!$("#camera").options.length) await this.listDevices();
    return stream;
  }

  async goLive() {
    if (this.publisher) return;
    const button = $("#go-live");
    button.disabled = true;
    try {
      const stream = this.stream || (await this.open());
      if (!stream) return;
      const publisher = new WhipPublisher(`/whip/${this.id}`, this.key);
      await publisher.start(stream, () => this.reconnect());
      this.publisher = publisher;
      $("#live-state").textContent = t("publishing");
      $("#live-state").className = "health-good";
      button.hidden = true;
      this.statsTimer = setInterval(() => this.showStats(), 1000);
    } catch (err) {
      this.error(`${t("error")}: ${err.code || ""} ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  async showStats() {
    if (!this.publisher) return;
    const s = await this.publisher.stats();
    if (!s) return;
    $("#stat-kbps").textContent = `${s.kbps} kbps`;
    $("#stat-fps").textContent = `${Math.round(s.fps)}`;
    $("#stat-rtt").textContent = s.rttMs === null ? "–" : `${s.rttMs} ms`;
    $("#stat-lost").textContent = String(s.lost);
    const healthy = s.state === "connected" && s.kbps > 50;
    $("#live-state").textContent = healthy ? t("publishing") : `${t("health")}: ${s.state}`;
    $("#live-state").className = healthy ? "health-good" : "health-bad";
    document.body.dataset.publishing = healthy ? "yes" : "no";
  }

  /**
   * The farm's network dropped: publish again with the same key. The server keeps the session
   * and its recording for a grace window, and the newest publisher replaces its old peer.
   */
  async reconnect() {
    if (this.reconnecting || !this.publisher) return;
    // The newest publisher wins: when another device took over, reconnecting would take the
    // stream back from it, so this browser steps aside instead.
    this.reconnecting = true;
    const mine = this.publisher.resource;
    if (this.load) {
      try {
        this.current = (await this.load()).publisher || null;
      } catch {
        // Unknown: reconnect as before.
      }
    }
    const current = this.current;
    if (this.publisher && current && !(current.kind === "whip" && current.resource === mine)) {
      this.reconnecting = false;
      this.publisher.abandon();
      this.publisher = null;
      clearInterval(this.statsTimer);
      $("#go-live").hidden = false;
      this.error(t("taken_over"));
      this.showPublisher(current);
      return;
    }
    if (!this.publisher) {
      this.reconnecting = false;
      return;
    }
    this.publisher.abandon();
    $("#live-state").textContent = t("reconnecting");
    $("#live-state").className = "health-bad";
    const deadline = Date.now() + 60_000;
    try {
      while (this.publisher && Date.now() < deadline) {
        const next = new WhipPublisher(`/whip/${this.id}`, this.key);
        try {
          await next.start(this.stream, () => this.reconnect());
          this.publisher = next;
          return;
        } catch (err) {
          next.abandon();
          // Wrong key, ended session, unknown session: retrying cannot help.
          if (err.status && ![409, 503, 0].includes(err.status) && err.status < 500) {
            this.error(`${t("error")}: ${err.code || ""} ${err.message}`);
            return;
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    } finally {
      this.reconnecting = false;
    }
  }

  /**
   * Who feeds the session (this browser, a phone's RTMP app, the demo picture), from the
   * session's `publisher` field; polled, so the console never says 未推流 while viewers watch.
   */
  showPublisher(info) {
    const el = $("#publisher-source");
    if (!info) {
      el.hidden = true;
      if (!this.publisher) {
        $("#live-state").textContent = t("not_publishing");
        $("#live-state").className = "muted";
      }
      return;
    }
    const since = new Date(info.since).toLocaleTimeString();
    el.textContent = t("publisher_source", { kind: t(`source_${info.kind}`), since });
    el.hidden = false;
    if (!this.publisher) {
      $("#live-state").textContent = t("publishing");
      $("#live-state").className = "health-good";
    }
  }

  async watchPublisher(load) {
    this.load = load;
    const poll = async () => {
      try {
        const session = await load();
        this.current = session.publisher || null;
        this.showPublisher(this.current);
      } catch {
        // A missed poll only delays the display.
      }
    };
    await poll();
    this.watchTimer = setInterval(poll, 3000);
  }

  async stop() {
    clearInterval(this.statsTimer);
    const publisher = this.publisher;
    this.publisher = null;
    if (publisher) await publisher.stop();
    $("#live-state").textContent = t("not_publishing");
    $("#live-state").className = "muted";
    $("#go-live").hidden = false;
    document.body.dataset.publishing = "no";
  }
}
