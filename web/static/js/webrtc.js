// WHIP (publish) and WHEP (play) clients: one SDP offer POSTed, the answer back, the resource URL
// kept for DELETE. Non-trickle: we wait for ICE gathering (bounded) so one round trip suffices.

export class MediaHttpError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

function waitForIce(pc, timeoutMs = 2000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function exchange(url, sdp, bearer) {
  const headers = { "Content-Type": "application/sdp" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const response = await fetch(url, { method: "POST", headers, body: sdp });
  if (response.status !== 201 && response.status !== 200) {
    let code = `http_${response.status}`;
    let message = "";
    try {
      const data = await response.json();
      code = (data.error && data.error.code) || code;
      message = (data.error && data.error.message) || "";
    } catch { /* not JSON */ }
    throw new MediaHttpError(response.status, code, message);
  }
  const location = response.headers.get("Location");
  const base = new URL(url, window.location.href);
  return { answer: await response.text(), location: location ? new URL(location, base).href : null };
}

function preferCodec(transceiver, kind, mimeType) {
  if (!transceiver.setCodecPreferences || !RTCRtpSender.getCapabilities) return;
  const caps = RTCRtpSender.getCapabilities(kind);
  if (!caps) return;
  const wanted = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mimeType);
  if (!wanted.length) return;
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== mimeType);
  try {
    transceiver.setCodecPreferences([...wanted, ...rest]);
  } catch { /* the browser keeps its own order */ }
}

/** Publish a MediaStream to /whip/{id} with the stream key. */
export class WhipPublisher {
  constructor(url, streamKey, { iceServers = [] } = {}) {
    this.url = url;
    this.key = streamKey;
    this.iceServers = iceServers;
    this.pc = null;
    this.resource = null;
    this.lastBytes = null;
  }

  /** onDrop fires when the connection fails (or stays disconnected for 5 s) after being up. */
  async start(stream, onDrop = null) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    let dropTimer = 0;
    pc.addEventListener("connectionstatechange", () => {
      clearTimeout(dropTimer);
      if (this.pc !== pc || !onDrop) return;
      if (pc.connectionState === "failed") onDrop();
      else if (pc.connectionState === "disconnected") dropTimer = setTimeout(() => this.pc === pc && onDrop(), 5000);
    });
    for (const track of stream.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      // H.264 first: the server can then record and serve HLS without re-encoding.
      if (track.kind === "video") preferCodec(transceiver, "video", "video/h264");
    }
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    const { answer, location } = await exchange(this.url, pc.localDescription.sdp, this.key);
    this.resource = location;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  }

  async replaceTrack(track) {
    if (!this.pc) return;
    const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === track.kind);
    if (sender) await sender.replaceTrack(track);
  }

  /** Outgoing video health from getStats: kbit/s since the last call, fps, RTT, loss. */
  async stats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    const out = { kbps: 0, fps: 0, rttMs: null, lost: 0, width: 0, height: 0, state: this.pc.connectionState };
    let bytes = 0;
    report.forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video") {
        bytes += s.bytesSent || 0;
        out.fps = s.framesPerSecond || out.fps;
        out.width = s.frameWidth || out.width;
        out.height = s.frameHeight || out.height;
      } else if (s.type === "remote-inbound-rtp") {
        out.lost += s.packetsLost || 0;
        if (s.roundTripTime !== undefined) out.rttMs = Math.round(s.roundTripTime * 1000);
      } else if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
        out.rttMs = out.rttMs ?? Math.round(s.currentRoundTripTime * 1000);
      }
    });
    const now = performance.now();
    if (this.lastBytes) {
      const seconds = (now - this.lastBytes.at) / 1000;
      if (seconds > 0) out.kbps = Math.max(0, Math.round(((bytes - this.lastBytes.bytes) * 8) / 1000 / seconds));
    }
    this.lastBytes = { bytes, at: now };
    return out;
  }

  /** Close the connection without telling the server (it waits out its grace window). */
  abandon() {
    if (this.pc) this.pc.close();
    this.pc = null;
  }

  async stop() {
    const resource = this.resource;
    this.resource = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    if (resource) {
      await fetch(resource, { method: "DELETE", headers: { Authorization: `Bearer ${this.key}` } })
        .catch(() => {});
    }
  }
}

/** Play /whep/{id}: resolves with the MediaStream once the answer is applied. */
export class WhepPlayer {
  constructor(url, { iceServers = [] } = {}) {
    this.url = url;
    this.iceServers = iceServers;
    this.pc = null;
    this.resource = null;
  }

  async start(onFailed) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const stream = new MediaStream();
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addEventListener("track", (event) => stream.addTrack(event.track));
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") onFailed?.();
    });
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    try {
      const { answer, location } = await exchange(this.url, pc.localDescription.sdp, null);
      this.resource = location;
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
    } catch (err) {
      pc.close();
      this.pc = null;
      throw err;
    }
    return stream;
  }

  stop() {
    const resource = this.resource;
    this.resource = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    if (resource) fetch(resource, { method: "DELETE" }).catch(() => {});
  }
}
