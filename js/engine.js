// The audio engine of one widget model, shared by all its views: mic capture through the
// capture worklet, playback through the player worklet, the echo gate, push-to-talk, and the
// messages to and from the kernel. Audio travels as binary comm buffers both ways, or as
// base64 in the message where the front end drops buffers (a round trip at start-up finds
// out which).
import CAPTURE_SRC from "worklet:capture";
import PLAYER_SRC from "worklet:player";
import { addWorklet, micErrorText, micProblem } from "./devices.js";
import { base64ToView, bytesToBase64, pcm16ToFloat } from "./dsp.js";
import { measureRoundTrip } from "./latency-probe.js";

const BUSY_FRAMES = 25; // unacknowledged 40 ms frames (1 s) before we say the kernel is busy
const AUDIO_ACK_EVERY = 5; // audio chunks between acknowledgements to the kernel
// after the agent's last sample has played, the mic stays closed this long (plus the device's
// output latency): the room's echo and the speaker's own delay must not reach the VAD
const ECHO_TAIL_MS = 300;
// push-to-talk: the mic keeps sending this long after release, so the last word is not clipped
const PTT_TAIL_MS = 200;
// sound the paused mic did not send (the user's voice, or the agent's own echo: they cannot be
// told apart here): this many 40 ms frames, net, at least this loud (RMS, about -34 dBFS)
const UNHEARD_LEVEL = 0.02;
const UNHEARD_FRAMES = 8;
const UNHEARD_SHOW_MS = 10000; // how long the widget says so after the last such frame
// the transport probe, sent with "ready": the kernel says whether it arrived intact
export const PROBE = [0x52, 0x54, 0x00, 0xff];

/** The audio of a message: its first binary buffer, or its base64 field; null if none. */
export function audioOf(msg, buffers) {
  if (buffers && buffers.length) return buffers[0];
  return typeof msg.b64 === "string" ? base64ToView(msg.b64) : null;
}

/** Whether the first buffer holds exactly `expected` (a list of bytes). */
export function probeIntact(buffers, expected) {
  if (!buffers || !buffers.length || !Array.isArray(expected)) return false;
  const v = buffers[0];
  const got = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return got.length === expected.length && expected.every((b, i) => got[i] === b);
}

/** Audio and state shared by every view of one widget model. */
export class Engine {
  constructor(model, env = globalThis) {
    this.model = model;
    this.env = env;
    this.listeners = new Set();
    this.rows = new Map();
    this.seq = 0;
    this.acked = 0;
    this.audioChunks = 0;
    this.micOn = false;
    this.headphones = false;
    this.level = 0;
    this.playing = false;
    this.agentBusy = false; // the player has agent audio playing, queued or still owed
    this.gated = false; // the mic sends silence (the agent is speaking, no headphones)
    this.gateTimer = null;
    this.loudWhileGated = 0; // frames of speech level the gate kept from the agent
    this.unheardAt = null; // when the paused mic last picked up sound (speech, or echo)
    this.unheardTimer = null; // redraws when the notice of it is due to go
    this.message = "";
    this.stats = { framesSent: 0, bytesSent: 0, pushedBytes: 0, started: 0, playedMs: 0,
                   flushes: 0, underruns: 0 };
    this.pending = [];
    this.voices = [];
    this.voice = "";
    this.playerReady = null;
    // mic frames go as base64 until the kernel says our probe's buffer arrived intact
    this.upBase64 = true;
    this.pttMode = false; // the mic sends only while push-to-talk is held
    this.pttHeld = false;
    this.pttRelease = null;
  }

  emit() {
    for (const fn of this.listeners) fn();
  }

  get busy() {
    return this.micOn && this.seq - this.acked > BUSY_FRAMES;
  }

  onMessage(msg, buffers) {
    switch (msg.type) {
      case "reply_audio": {
        const view = audioOf(msg, buffers);
        if (view) {
          this.push(msg.item_id, view);
          this.audioChunks++;
          // the kernel stops sending audio to a page that stops taking it (a frozen tab)
          if (this.audioChunks % AUDIO_ACK_EVERY === 0) {
            this.model.send({ type: "reply_audio_ack", bytes: this.stats.pushedBytes });
          }
        }
        break;
      }
      case "transport_check":
        this.negotiated(msg, buffers);
        break;
      case "reply_audio_done":
        this.post({ type: "end", item: msg.item_id });
        break;
      case "backchannel": {
        const view = audioOf(msg, buffers);
        if (view) this.backchannel(view);
        break;
      }
      case "flush":
        // a typed turn cut the reply: the kernel waits for our report before answering it
        if (msg.reason === "turn" && !this.playerReady) this.model.send({ type: "turn_flushed" });
        else this.flush(msg.reason || "server");
        break;
      case "rows":
        for (const row of msg.rows) this.rows.set(row.id, row);
        for (const id of msg.removed || []) this.rows.delete(id);
        if (msg.reset) {
          const keep = new Set(msg.rows.map((r) => r.id));
          for (const id of [...this.rows.keys()]) if (!keep.has(id)) this.rows.delete(id);
        }
        this.emit();
        break;
      case "voices":
        this.voices = msg.names || [];
        this.voice = msg.current || "";
        this.emit();
        break;
      case "mic_audio_ack":
        this.acked = Math.max(this.acked, msg.seq);
        this.emit();
        break;
      case "latency_test":
        this.probe().catch((e) => this.model.send({ type: "latency_result", heard: false,
                                                     error: String(e) }));
        break;
    }
  }

  /** The kernel's answer to our probe, with its own: now both sides know what arrives. */
  negotiated(msg, buffers) {
    this.upBase64 = msg.up !== true;
    const down = probeIntact(buffers, msg.probe);
    this.model.send({ type: "transport", up: msg.up === true, down });
    this.emit();
  }

  post(msg, transfer) {
    if (this.player) this.player.port.postMessage(msg, transfer || []);
    else this.pending.push([msg, transfer]);
  }

  async ensurePlayback() {
    if (!this.playerReady) this.playerReady = this._startPlayback();
    return this.playerReady;
  }

  async _startPlayback() {
    const AC = this.env.AudioContext || this.env.webkitAudioContext;
    const ctx = new AC({ sampleRate: 24000, latencyHint: "interactive" });
    this.playCtx = ctx;
    await addWorklet(ctx, PLAYER_SRC);
    const node = new this.env.AudioWorkletNode(ctx, "rt-player", {
      numberOfInputs: 0, outputChannelCount: [1], processorOptions: { prebufferMs: 100 },
    });
    node.connect(ctx.destination);
    node.port.onmessage = (e) => this.onPlayer(e.data);
    this.player = node;
    for (const [msg, transfer] of this.pending.splice(0)) node.port.postMessage(msg, transfer || []);
    if (ctx.state !== "running") await ctx.resume();
  }

  push(itemId, view) {
    // copy out of the message's buffer, then transfer the copy to the worklet
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();
    this.stats.pushedBytes += bytes.byteLength;
    this.post({ type: "push", item: itemId, buf: bytes.buffer }, [bytes.buffer]);
    if (!this.player) this.ensurePlayback().catch((e) => this.fail(String(e)));
  }

  /**
   * Back-channel audio ("uh-huh" while the user speaks) plays beside the reply player, queued
   * chunk after chunk: it is no reply, so it is not counted, timed, gated or truncated.
   */
  backchannel(view) {
    const pcm = new Int16Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
    this.stats.backchannelMs = (this.stats.backchannelMs || 0) + pcm.length / 24;
    this.ensurePlayback().then(() => {
      const ctx = this.playCtx;
      const buffer = ctx.createBuffer(1, pcm.length, 24000);
      pcm16ToFloat(pcm, buffer.getChannelData(0));
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(ctx.destination);
      this.backchannelAt = Math.max(ctx.currentTime, this.backchannelAt || 0);
      source.start(this.backchannelAt);
      this.backchannelAt += buffer.duration;
    }).catch((e) => this.fail(String(e)));
  }

  flush(reason) {
    this.stats.flushes++;
    this.post({ type: "flush", reason });
  }

  onPlayer(msg) {
    if (msg.type === "started") {
      this.stats.started++;
      // the worklet rendered the item's first sample; the device adds its output latency
      const ctx = this.player.context;
      const deviceMs = ((ctx.outputLatency || 0) + (ctx.baseLatency || 0)) * 1000;
      this.model.send({ type: "playback_started", item_id: msg.item,
                        t: performance.timeOrigin + performance.now(), device_ms: deviceMs });
    } else if (msg.type === "progress") {
      this.stats.playedMs = msg.played / 24;
      this.stats.underruns = msg.underruns;
      if (msg.busy !== this.agentBusy) {
        this.agentBusy = msg.busy;
        this.updateGate();
      }
      if (msg.playing !== this.playing) {
        this.playing = msg.playing;
        this.emit();
      }
    } else if (msg.type === "flushed") {
      this.playing = false;
      this.agentBusy = false;
      this.updateGate(true);
      const latency = Math.round(((this.playCtx && this.playCtx.outputLatency) || 0) * 1000);
      const ms = Math.max(0, Math.floor(msg.played / 24) - latency);
      if (msg.item !== null) {
        this.model.send({ type: "playback_stopped", item_id: msg.item, audio_end_ms: ms,
                          reason: msg.reason });
      }
      if (msg.reason === "turn") this.model.send({ type: "turn_flushed" });
      this.emit();
    }
  }

  /**
   * The echo gate: without headphones the mic sends silence from the agent's first sample
   * until its last one has left the speaker (plus a tail), so the agent never hears itself as
   * a user barging in. `now` opens it at once (a barge-in: the user is talking).
   */
  updateGate(now = false) {
    clearTimeout(this.gateTimer);
    this.gateTimer = null;
    const want = this.agentBusy && !this.headphones && !this.pttHeld;
    if (want || now || !this.gated) return this.setGate(want);
    const ctx = this.playCtx;
    const tail = ECHO_TAIL_MS + ((ctx && ctx.outputLatency) || 0) * 1000;
    this.gateTimer = setTimeout(() => this.setGate(false), tail);
  }

  setGate(on) {
    if (!on) this.loudWhileGated = 0;
    this.gated = on;
    if (this.capture) this.capture.port.postMessage({ type: "gate", on });
    this.emit();
  }

  setHeadphones(on) {
    this.headphones = on;
    this.updateGate(on);
  }

  /**
   * Push-to-talk pressed: the agent stops, the mic opens (started on the first press) and the
   * kernel turns the server's turn detection off; frames flow only while it is held.
   */
  async pttDown() {
    if (this.pttRelease) { // pressed again within the release tail: the same turn goes on
      clearTimeout(this.pttRelease);
      this.pttRelease = null;
      return;
    }
    if (this.pttHeld) return;
    this.pttHeld = true;
    this.pttMode = true;
    this.flush("user");
    this.model.send({ type: "ptt", on: true });
    this.updateGate(true);
    if (!this.micOn) await this.startMic(true);
  }

  /** Push-to-talk released: after a short tail the turn ends and the kernel asks for a reply. */
  pttUp() {
    if (!this.pttHeld || this.pttRelease) return;
    this.pttRelease = setTimeout(() => {
      this.pttRelease = null;
      this.pttHeld = false;
      this.model.send({ type: "ptt", on: false });
      this.updateGate();
    }, PTT_TAIL_MS);
  }

  /** Back to hands-free talk: the mic (started if need be) sends all the time again. */
  async handsFree() {
    if (!this.micOn) return this.startMic(false);
    this.pttMode = false;
    this.model.send({ type: "mic", on: true, ptt: false });
    this.updateGate();
    this.emit();
  }

  async startMic(ptt = false) {
    this.pttMode = ptt;
    const problem = micProblem(this.env);
    if (problem) return this.fail(problem);
    await this.ensurePlayback();
    let stream;
    try {
      stream = await this.env.navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true,
                 autoGainControl: true },
      });
    } catch (err) {
      return this.fail(micErrorText(err));
    }
    const AC = this.env.AudioContext || this.env.webkitAudioContext;
    const ctx = new AC({ latencyHint: "interactive" }); // the device rate; the worklet resamples
    await addWorklet(ctx, CAPTURE_SRC);
    const source = ctx.createMediaStreamSource(stream);
    // the agent may be speaking already: the mic starts gated then
    const node = new this.env.AudioWorkletNode(ctx, "rt-capture", {
      processorOptions: { frameMs: 40, gate: this.gated },
    });
    const sink = ctx.createGain();
    sink.gain.value = 0;
    source.connect(node).connect(sink).connect(ctx.destination);
    node.port.onmessage = (e) => this.onFrame(e.data);
    Object.assign(this, { micCtx: ctx, micStream: stream, capture: node, micOn: true });
    node.port.postMessage({ type: "gate", on: this.gated }); // it may have changed meanwhile
    this.message = "";
    this.model.send({ type: "mic", on: true, rate: ctx.sampleRate, ptt });
    this.emit();
  }

  /**
   * The browser's own audio round trip (see ``measureRoundTrip``), sent to the kernel and
   * shown in every view. Mic frames are not sent while it runs.
   */
  async probe() {
    const problem = micProblem(this.env);
    if (problem) return this.model.send({ type: "latency_result", heard: false, error: problem });
    if (this.probing) return;
    this.probing = true;
    this.emit();
    let result;
    try {
      result = await measureRoundTrip(this.env);
    } finally {
      this.probing = false;
    }
    this.probeResult = result;
    this.model.send({ type: "latency_result", ...result });
    this.emit();
    return result;
  }

  onFrame(msg) {
    if (msg.type !== "frame" || !this.micOn || this.probing) return;
    if (this.pttMode && !this.pttHeld) return;
    this.level = msg.level;
    if (this.gated) this.noteUnheard(msg.level);
    this.seq++;
    this.stats.framesSent++;
    this.stats.bytesSent += msg.buf.byteLength;
    const t = performance.timeOrigin + performance.now(); // wall clock, ms
    if (this.upBase64) {
      const b64 = bytesToBase64(new Uint8Array(msg.buf));
      this.model.send({ type: "mic_audio", seq: this.seq, t, b64 });
    } else {
      this.model.send({ type: "mic_audio", seq: this.seq, t }, undefined, [msg.buf]);
    }
    if (this.seq % 5 === 0) this.emit();
  }

  /**
   * A frame the echo gate replaced with silence: once the mic has been loud for a moment (a
   * third of a second, net of quiet frames) the user may have been speaking, and the widget
   * says that anything said then was not heard.
   */
  noteUnheard(level) {
    // a leaky count: the pauses between words do not reset it, a stray loud frame fades
    this.loudWhileGated = Math.max(0, this.loudWhileGated + (level >= UNHEARD_LEVEL ? 1 : -1));
    if (this.loudWhileGated < UNHEARD_FRAMES) return;
    const first = !this.unheard;
    this.unheardAt = performance.now();
    clearTimeout(this.unheardTimer);
    this.unheardTimer = setTimeout(() => this.emit(), UNHEARD_SHOW_MS);
    if (first) this.emit();
  }

  /** Whether the paused mic picked up sound in the last few seconds. */
  get unheard() {
    return this.unheardAt !== null && performance.now() - this.unheardAt < UNHEARD_SHOW_MS;
  }

  stopMic() {
    if (this.micStream) for (const t of this.micStream.getTracks()) t.stop();
    if (this.micCtx) this.micCtx.close();
    Object.assign(this, { micCtx: null, micStream: null, capture: null, micOn: false, level: 0 });
    this.model.send({ type: "mic", on: false });
    this.emit();
  }

  fail(text) {
    this.message = text;
    this.model.send({ type: "client_error", message: text });
    this.emit();
  }

  destroy() {
    clearTimeout(this.unheardTimer);
    this.stopMic();
    if (this.playCtx) this.playCtx.close();
  }
}
