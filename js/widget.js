// The voice chat widget: mic capture and playback (initialize, once per model) and the UI
// (render, once per view). Audio travels as binary comm buffers both ways, or as base64 in the
// message where the front end drops buffers (a round trip at start-up finds out which).
import CAPTURE_SRC from "worklet:capture";
import PLAYER_SRC from "worklet:player";
import PROBE_SRC from "worklet:probe";
import { base64ToView, bytesToBase64, chirp, findChirp, pcm16ToFloat } from "./dsp.js";

const ENGINES = new Map(); // widget key -> Engine, shared by initialize and every render
const BUSY_FRAMES = 25; // unacknowledged 40 ms frames (1 s) before we say the kernel is busy
const AUDIO_ACK_EVERY = 5; // audio chunks between acknowledgements to the kernel
const PROBE_AT_S = 0.3; // the chirp plays this long after the probe starts listening
const PROBE_LISTEN_MS = 1500;
// after the agent's last sample has played, the mic stays closed this long (plus the device's
// output latency): the room's echo and the speaker's own delay must not reach the VAD
const ECHO_TAIL_MS = 300;
// push-to-talk: the mic keeps sending this long after release, so the last word is not clipped
const PTT_TAIL_MS = 200;
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

function moduleUrl(src) {
  return URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
}

async function addWorklet(ctx, src) {
  const url = moduleUrl(src);
  try {
    await ctx.audioWorklet.addModule(url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** Why the mic cannot work here, or null. */
export function micProblem(win = globalThis) {
  if (!win.isSecureContext) {
    return "The microphone needs a secure page: open JupyterLab over https or at localhost " +
      "(an SSH tunnel works). Plain http to another host has no mic and no audio worklets.";
  }
  if (!win.navigator || !win.navigator.mediaDevices || !win.navigator.mediaDevices.getUserMedia) {
    return "This page has no microphone API (VS Code notebooks do not allow the mic).";
  }
  if (!win.AudioWorkletNode) return "This browser has no AudioWorklet support.";
  return null;
}

export function micErrorText(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "Microphone permission was denied. Allow it in the browser's site settings and " +
      "press the mic button again.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return "No microphone was found. Plug one in and press the mic button again.";
  }
  if (name === "NotReadableError") return "The microphone is in use by another program.";
  return `The microphone could not start: ${err && err.message ? err.message : err}`;
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
      case "audio": {
        const view = audioOf(msg, buffers);
        if (view) {
          this.push(msg.item_id, view);
          this.audioChunks++;
          // the kernel stops sending audio to a page that stops taking it (a frozen tab)
          if (this.audioChunks % AUDIO_ACK_EVERY === 0) {
            this.model.send({ type: "audio_ack", bytes: this.stats.pushedBytes });
          }
        }
        break;
      }
      case "transport":
        this.negotiated(msg, buffers);
        break;
      case "audio_done":
        this.post({ type: "end", item: msg.item_id });
        break;
      case "backchannel": {
        const view = audioOf(msg, buffers);
        if (view) this.backchannel(view);
        break;
      }
      case "flush":
        this.flush(msg.reason || "server");
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
      case "ack":
        this.acked = Math.max(this.acked, msg.seq);
        this.emit();
        break;
      case "probe":
        this.probe().catch((e) => this.model.send({ type: "probe_result", heard: false,
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
        this.model.send({ type: "played", item_id: msg.item, audio_end_ms: ms, reason: msg.reason });
      }
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
   * The browser's own audio round trip: play a chirp, listen for it on the mic (no echo
   * cancellation, or it would be removed), and time the echo on the audio clock. Reports what
   * the browser says of its latencies too. Mic frames are not sent while it runs.
   */
  async probe() {
    const result = { type: "probe_result", heard: false };
    const problem = micProblem(this.env);
    if (problem) return this.model.send({ ...result, error: problem });
    if (this.probing) return;
    this.probing = true;
    this.emit();
    let stream = null;
    let ctx = null;
    try {
      stream = await this.env.navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false,
                 autoGainControl: false },
      });
      const AC = this.env.AudioContext || this.env.webkitAudioContext;
      ctx = new AC({ latencyHint: "interactive" });
      await addWorklet(ctx, PROBE_SRC);
      const source = ctx.createMediaStreamSource(stream);
      const recorder = new this.env.AudioWorkletNode(ctx, "rt-probe");
      const sink = ctx.createGain();
      sink.gain.value = 0;
      source.connect(recorder).connect(sink).connect(ctx.destination);
      const blocks = [];
      recorder.port.onmessage = (e) => blocks.push(e.data);
      if (ctx.state !== "running") await ctx.resume();
      const tpl = chirp(ctx.sampleRate);
      const buffer = ctx.createBuffer(1, tpl.length, ctx.sampleRate);
      buffer.copyToChannel(tpl, 0);
      const player = ctx.createBufferSource();
      player.buffer = buffer;
      player.connect(ctx.destination);
      const startAt = ctx.currentTime + PROBE_AT_S;
      player.start(startAt);
      await new Promise((done) => setTimeout(done, PROBE_LISTEN_MS));
      recorder.port.postMessage({ type: "stop" });
      const settings = stream.getAudioTracks()[0].getSettings ?
        stream.getAudioTracks()[0].getSettings() : {};
      Object.assign(result, {
        rate: ctx.sampleRate,
        output_ms: ((ctx.outputLatency || 0) + (ctx.baseLatency || 0)) * 1000,
        input_ms: typeof settings.latency === "number" ? settings.latency * 1000 : null,
      });
      if (blocks.length) {
        const first = blocks[0].frame;
        const total = blocks[blocks.length - 1].frame + blocks[blocks.length - 1].buf.length - first;
        const samples = new Float32Array(total);
        for (const b of blocks) samples.set(b.buf, b.frame - first);
        // an echo cannot come before the chirp was played: search from there on
        const from = Math.max(0, Math.round(startAt * ctx.sampleRate) - first);
        const found = findChirp(samples.subarray(from), tpl);
        if (found) {
          const lag = first + from + found.index - startAt * ctx.sampleRate;
          Object.assign(result, { heard: true, roundtrip_ms: (lag / ctx.sampleRate) * 1000,
                                  score: found.score });
        }
      }
    } catch (err) {
      result.error = micErrorText(err);
    } finally {
      if (stream) for (const t of stream.getTracks()) t.stop();
      if (ctx) ctx.close();
      this.probing = false;
    }
    this.probeResult = result;
    this.model.send(result);
    this.emit();
    return result;
  }

  onFrame(msg) {
    if (msg.type !== "frame" || !this.micOn || this.probing) return;
    if (this.pttMode && !this.pttHeld) return;
    this.level = msg.level;
    this.seq++;
    this.stats.framesSent++;
    this.stats.bytesSent += msg.buf.byteLength;
    const t = performance.timeOrigin + performance.now(); // wall clock, ms
    if (this.upBase64) {
      const b64 = bytesToBase64(new Uint8Array(msg.buf));
      this.model.send({ type: "audio", seq: this.seq, t, b64 });
    } else {
      this.model.send({ type: "audio", seq: this.seq, t }, undefined, [msg.buf]);
    }
    if (this.seq % 5 === 0) this.emit();
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
    this.stopMic();
    if (this.playCtx) this.playCtx.close();
  }
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null) el.append(c);
  return el;
}

/** One line on the latency probe: running, its result, or why it heard nothing. */
export function probeText(engine) {
  if (engine.probing) return "Measuring the audio round trip…";
  const r = engine.probeResult;
  if (!r) return "";
  const out = r.output_ms != null ? ` (the browser reports ${Math.round(r.output_ms)} ms ` +
    "output latency)" : "";
  if (r.heard) return `Audio round trip: ${Math.round(r.roundtrip_ms)} ms${out}.`;
  if (r.error) return `Latency probe: ${r.error}`;
  return `The probe's chirp was not heard back (headphones, or muted speakers?)${out}.`;
}

function rowElement(row) {
  const el = h("div", { class: `rtw-row rtw-${row.role || "system"} rtw-${row.kind}` });
  el.dataset.id = row.id;
  if (row.kind === "function_call" || row.kind === "function_call_output") {
    const head = row.kind === "function_call" ? `ƒ ${row.name}(${row.arguments || ""})` :
      `→ ${row.name || "tool"}`;
    el.append(h("div", { class: "rtw-tool-head" }, head));
    if (row.kind === "function_call_output") {
      el.append(h("div", { class: row.error ? "rtw-tool-error" : "rtw-tool-output" },
                  row.error || row.output || ""));
    }
  } else {
    const who = row.role === "user" ? "you" : row.role === "assistant" ? "agent" : row.role;
    // words only: "…" while they are on their way, never a stand-in for them
    el.append(h("span", { class: "rtw-who" }, who), h("span", { class: "rtw-text" },
      row.text || (row.pending || row.status === "in_progress" ? "…" : "")));
    if (row.role === "user" && row.seconds) {
      el.append(h("span", { class: "rtw-meta", title: "how long you spoke" },
        `${row.seconds.toFixed(1)} s`));
    }
    if (row.error) el.append(h("span", { class: "rtw-meta rtw-row-error" }, row.error));
    if (row.latency != null) {
      el.append(h("span", { class: "rtw-latency", title: "from the end of your turn to this " +
        "reply playing (chat.df and rt.plot_latency show each stage)" },
        `latency ${row.latency.toFixed(2)} s`));
    }
  }
  if (row.status === "incomplete" || row.cut) {
    el.classList.add("rtw-cut");
    el.title = row.cut ? "cut off where you interrupted: what you heard" : "cut off";
  }
  return el;
}

/** Set an element's text only when it differs (setting it always costs a relayout). */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** Set data-* attributes that changed, leaving the others untouched. */
function setData(el, values) {
  for (const [k, v] of Object.entries(values)) {
    const text = String(v);
    if (el.dataset[k] !== text) el.dataset[k] = text;
  }
}

/** Make ``el`` look like ``fresh`` (a row just built from newer data), touching only the
 * parts that differ: a streaming reply changes one text node, not the whole row. */
function patchRow(el, fresh) {
  if (el.className !== fresh.className) el.className = fresh.className;
  if (el.title !== fresh.title) el.title = fresh.title;
  const now = [...el.childNodes];
  const next = [...fresh.childNodes];
  if (now.length !== next.length) {
    el.replaceChildren(...next);
    return;
  }
  now.forEach((node, i) => {
    const want = next[i];
    if (node.isEqualNode(want)) return;
    const sameShell = node.nodeType === 1 && node.tagName === want.tagName &&
      node.className === want.className && node.title === want.title &&
      node.childElementCount === 0 && want.childElementCount === 0;
    if (sameShell) node.textContent = want.textContent;
    else node.replaceWith(want);
  });
}

const MAX_ROWS = 200; // transcript rows kept in the page; older ones are collapsed

/** The transcript's rows: rebuilds only rows whose data changed, keeps at most ``MAX_ROWS``
 * (more on request) and orders them by position only when the set of rows changed. */
function transcriptRows(container) {
  const known = new Map(); // id -> the row object last drawn
  const shown = new Map(); // id -> its element, for rows in the page
  let limit = MAX_ROWS;
  let changed = [];
  let layout = true;
  const more = h("button", { type: "button", class: "rtw-more" });
  more.addEventListener("click", () => {
    limit += MAX_ROWS;
    layout = true;
    const before = container.scrollHeight;
    draw(false);
    container.scrollTop += container.scrollHeight - before; // keep the rows in view still
  });

  /** Take the engine's rows; true if anything needs drawing. */
  function sync(rows) {
    for (const [id, row] of rows) {
      const prev = known.get(id);
      if (prev === row) continue;
      if (!prev || prev.pos !== row.pos) layout = true;
      known.set(id, row);
      changed.push(row);
    }
    if (layout || known.size !== rows.size) {
      for (const id of [...known.keys()]) if (!rows.has(id)) known.delete(id);
      layout = true;
    }
    return layout || changed.length > 0;
  }

  function draw(stickToBottom) {
    for (const row of changed) {
      const el = shown.get(row.id);
      if (el) patchRow(el, rowElement(row));
    }
    changed = [];
    if (layout) place();
    layout = false;
    if (stickToBottom) container.scrollTop = container.scrollHeight;
  }

  function place() {
    const order = [...known.values()].sort((a, b) => a.pos - b.pos);
    const visible = order.slice(-limit);
    const keep = new Set(visible.map((r) => r.id));
    for (const [id, el] of shown) {
      if (!keep.has(id)) {
        el.remove();
        shown.delete(id);
      }
    }
    const hidden = order.length - visible.length;
    if (hidden > 0) {
      more.textContent = `Show ${Math.min(hidden, MAX_ROWS)} earlier messages (${hidden} hidden)`;
      if (container.firstChild !== more) container.prepend(more);
    } else if (more.parentNode) {
      more.remove();
    }
    const offset = hidden > 0 ? 1 : 0;
    visible.forEach((row, i) => {
      let el = shown.get(row.id);
      if (!el) {
        el = rowElement(row);
        shown.set(row.id, el);
      }
      const at = container.children[i + offset];
      if (at !== el) container.insertBefore(el, at || null);
    });
  }

  return { sync, draw };
}

/** The hold-to-talk button: the mic is open only while it is pressed. */
function pushToTalkButton(engine) {
  const btn = h("button", { class: "rtw-ptt", type: "button",
    title: "Hold to talk (or hold Space while the widget has focus): the agent stops, and " +
      "answers when you let go. Best on laptop speakers." }, "Hold to talk");
  const up = () => engine.pttUp();
  btn.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    btn.setPointerCapture(e.pointerId);
    engine.pttDown().catch((err) => engine.fail(String(err)));
  });
  for (const name of ["pointerup", "pointercancel", "lostpointercapture"]) {
    btn.addEventListener(name, up);
  }
  return btn;
}

/** Space held while the widget has focus (not in the text box) is push-to-talk. */
function listenPushToTalkKey(root, engine) {
  root.tabIndex = 0;
  const isSpace = (e) => e.code === "Space" && !["INPUT", "SELECT", "TEXTAREA"].includes(
    e.target.tagName);
  root.addEventListener("keydown", (e) => {
    if (!isSpace(e)) return;
    e.preventDefault();
    e.stopPropagation(); // JupyterLab's command-mode shortcuts must not see it
    if (!e.repeat) engine.pttDown().catch((err) => engine.fail(String(err)));
  });
  root.addEventListener("keyup", (e) => {
    if (!isSpace(e)) return;
    e.preventDefault();
    e.stopPropagation();
    engine.pttUp();
  });
}

function render({ model, el }) {
  const engine = ENGINES.get(model.get("_key"));
  const state = h("span", { class: "rtw-state" });
  const meter = h("span", { class: "rtw-meter" }, h("span", { class: "rtw-meter-fill" }));
  const micBtn = h("button", { class: "rtw-mic", type: "button", onclick: () => {
    if (engine.micOn && !engine.pttMode) engine.stopMic();
    else engine.handsFree().catch((e) => engine.fail(String(e)));
  } });
  const stopBtn = h("button", { class: "rtw-stop", type: "button", title: "Stop the agent",
    onclick: () => { engine.flush("user"); model.send({ type: "interrupt" }); } }, "■ Stop");
  const probeBtn = h("button", { class: "rtw-probe", type: "button",
    title: "Measure this browser's audio round trip: plays a short chirp and listens for it " +
      "(use speakers; headphones keep the chirp from the mic)",
    onclick: () => { engine.probe().catch((e) => engine.fail(String(e))); } }, "Latency test");
  const pttBtn = pushToTalkButton(engine);
  const transport = h("span", { class: "rtw-transport", title: "How audio travels between " +
    "this page and the kernel: binary comm buffers, or base64 where the front end drops them" });
  const connBtn = h("button", { class: "rtw-conn", type: "button", onclick: () => {
    model.send({ type: model.get("status") === "closed" ? "connect" : "disconnect" });
  } });
  const phones = h("input", { type: "checkbox", onchange: () => {
    engine.setHeadphones(phones.checked);
  } });
  const provider = h("span", { class: "rtw-provider" });
  const voicePick = h("select", { class: "rtw-voice", title: "Voice", onchange: () => {
    engine.voice = voicePick.value;
    model.send({ type: "voice", voice: voicePick.value });
  } });
  const notice = h("div", { class: "rtw-notice" });
  const error = h("div", { class: "rtw-error", role: "alert" });
  const transcript = h("div", { class: "rtw-transcript", "aria-live": "polite" });
  const input = h("input", { type: "text", class: "rtw-text-input",
                             placeholder: "Type a message and press Enter" });
  const submit = () => {
    const text = input.value.trim();
    if (!text) return;
    engine.ensurePlayback().catch(() => {});
    model.send({ type: "text", text });
    input.value = "";
  };
  // keys typed here are ours: JupyterLab's command-mode shortcuts must not see them
  input.addEventListener("keydown", (e) => {
    e.stopPropagation();
    if (e.key === "Enter") {
      e.preventDefault();
      submit();
    }
  });
  const form = h("form", { class: "rtw-form", onsubmit: (e) => { e.preventDefault(); submit(); } },
    input, h("button", { type: "submit" }, "Send"));
  const root = h("div", { class: "rtw" },
    h("div", { class: "rtw-bar" }, connBtn, micBtn, pttBtn, stopBtn, meter, state,
      h("label", { class: "rtw-phones", title: "With headphones the mic stays open while " +
        "the agent speaks, so you can interrupt by voice" }, phones, " headphones"), voicePick,
      probeBtn, transport, provider),
    notice, error, transcript, form);
  listenPushToTalkKey(root, engine);
  el.append(root);

  const rows = transcriptRows(transcript);
  function update() {
    const rowsChanged = rows.sync(engine.rows);
    // read the scroll position before anything is written (no forced layout); rows out of
    // view have estimated heights, so "at the bottom" allows a couple of rows of slack
    const atBottom = rowsChanged &&
      transcript.scrollTop + transcript.clientHeight >= transcript.scrollHeight - 80;
    const status = model.get("status");
    const busy = engine.busy;
    const label = status !== "connected" ? status :
      busy ? "kernel busy" : engine.playing ? "speaking" : model.get("phase") || "idle";
    setText(state, label);
    setData(root, {
      state: label, status,
      framesSent: engine.stats.framesSent, pushedBytes: engine.stats.pushedBytes,
      playedMs: Math.round(engine.stats.playedMs), started: engine.stats.started,
      underruns: engine.stats.underruns, micOn: engine.micOn, acked: engine.acked,
      ptt: engine.pttHeld, transport: model.get("transport"),
    });
    pttBtn.classList.toggle("rtw-on", engine.pttHeld);
    setText(transport, model.get("transport") ? `audio: ${model.get("transport")}` : "");
    setText(micBtn, engine.micOn && !engine.pttMode ? "● Mic on" : "Start mic");
    micBtn.classList.toggle("rtw-on", engine.micOn && !engine.pttMode);
    setText(connBtn, status === "closed" ? "Connect" : "Disconnect");
    const width = `${Math.min(100, Math.round(engine.level * 400))}%`;
    if (meter.firstChild.style.width !== width) meter.firstChild.style.width = width;
    setText(provider, model.get("provider"));
    const names = engine.voices;
    if (voicePick.options.length !== names.length) {
      voicePick.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
      if (names.includes(engine.voice)) voicePick.value = engine.voice;
    }
    voicePick.style.display = names.length ? "" : "none";
    setText(notice, [model.get("notice"), engine.pttMode ? "Push-to-talk: hold the " +
      "button (or Space) to talk; the agent stops, and answers when you let go." :
      engine.gated && engine.micOn ?
      "Mic paused while the agent speaks (headphones recommended; ■ Stop interrupts)." : "",
      probeText(engine)].filter(Boolean).join(" "));
    probeBtn.disabled = !!engine.probing;
    setText(error, engine.message || model.get("error"));
    if (rowsChanged) rows.draw(atBottom);
  }
  // redraw at most once a frame, however many messages arrive in between
  let queued = false;
  let alive = true;
  const schedule = () => {
    if (queued) return;
    queued = true;
    (globalThis.requestAnimationFrame || setTimeout)(() => {
      queued = false;
      if (alive) update();
    });
  };
  engine.listeners.add(schedule);
  const onChange = schedule;
  const TRAITS = ["status", "phase", "provider", "notice", "error", "transport"];
  for (const name of TRAITS) {
    model.on(`change:${name}`, onChange);
  }
  update();
  root.dataset.ready = "true";
  return () => {
    alive = false;
    engine.listeners.delete(schedule);
    for (const name of TRAITS) {
      model.off(`change:${name}`, onChange);
    }
  };
}

function initialize({ model }) {
  const engine = new Engine(model);
  const key = model.get("_key");
  ENGINES.set(key, engine);
  const onMsg = (msg, buffers) => engine.onMessage(msg, buffers);
  model.on("msg:custom", onMsg);
  try {
    model.send({ type: "ready", probe: PROBE }, undefined, [new Uint8Array(PROBE).buffer]);
  } catch (err) { // a manager that refuses buffers outright: the probe is lost all the same
    model.send({ type: "ready", probe: PROBE });
  }
  return () => {
    model.off("msg:custom", onMsg);
    engine.destroy();
    ENGINES.delete(key);
  };
}

export default { initialize, render };
