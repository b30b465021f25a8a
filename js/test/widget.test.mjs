// Main-thread pieces of the widget that need no browser: mic diagnostics and message handling.
import { test } from "node:test";
import assert from "node:assert/strict";
import { importBundle } from "../bundle.mjs";
import { micErrorText, micProblem } from "../devices.js";
import { bytesToBase64 } from "../dsp.js";

const mod = await importBundle("engine.js");
const { probeText } = await importBundle("latency-probe.js");

test("an insecure page, a missing API and a denied mic each get a plain message", () => {
  assert.match(micProblem({ isSecureContext: false }), /secure page.*https.*localhost/);
  assert.match(micProblem({ isSecureContext: true, navigator: {} }), /no microphone API/);
  const ok = { isSecureContext: true, AudioWorkletNode: class {},
               navigator: { mediaDevices: { getUserMedia() {} } } };
  assert.equal(micProblem(ok), null);
  assert.match(micErrorText({ name: "NotAllowedError" }), /permission was denied/);
  assert.match(micErrorText({ name: "NotFoundError" }), /No microphone was found/);
  assert.match(micErrorText({ name: "NotReadableError" }), /in use/);
});

function fakeModel() {
  const sent = [];
  return { sent, get: () => "", send: (msg, cb, buffers) => sent.push([msg, buffers]) };
}

test("rows are kept per item, removed on request, and reset on a snapshot", () => {
  const engine = new mod.Engine(fakeModel(), {});
  let redraws = 0;
  engine.listeners.add(() => redraws++);
  engine.onMessage({ type: "rows", rows: [{ id: "a", pos: 0 }, { id: "b", pos: 1 }] });
  engine.onMessage({ type: "rows", rows: [{ id: "a", pos: 0, text: "hi" }], removed: ["b"] });
  assert.deepEqual([...engine.rows.keys()], ["a"]);
  assert.equal(engine.rows.get("a").text, "hi");
  engine.onMessage({ type: "rows", rows: [{ id: "c", pos: 0 }], reset: true });
  assert.deepEqual([...engine.rows.keys()], ["c"]);
  assert.equal(redraws, 3);
});

test("the kernel counts as busy once a second of mic frames is unacknowledged", () => {
  const engine = new mod.Engine(fakeModel(), {});
  engine.micOn = true;
  engine.seq = 20;
  engine.onMessage({ type: "mic_audio_ack", seq: 10 });
  assert.equal(engine.busy, false);
  engine.seq = 40;
  assert.equal(engine.busy, true);
  engine.onMessage({ type: "mic_audio_ack", seq: 40 });
  assert.equal(engine.busy, false);
});

test("audio for the player is queued until the player exists, copied out of the message", () => {
  const engine = new mod.Engine(fakeModel(), {});
  engine.ensurePlayback = async () => {};
  const bytes = new Uint8Array([1, 0, 2, 0]);
  engine.onMessage({ type: "reply_audio", item_id: "i1" }, [new DataView(bytes.buffer)]);
  assert.equal(engine.pending.length, 1);
  const [msg] = engine.pending[0];
  assert.equal(msg.type, "push");
  assert.deepEqual([...new Uint8Array(msg.buf)], [1, 0, 2, 0]);
  assert.notEqual(msg.buf, bytes.buffer);
  assert.equal(engine.stats.pushedBytes, 4);
});

test("the latency probe says what it measured, or why it could not", async () => {
  assert.equal(probeText({}), "");
  assert.match(probeText({ probing: true }), /Measuring/);
  assert.match(probeText({ probeResult: { heard: true, roundtrip_ms: 142.4, output_ms: 21 } }),
               /round trip: 142 ms \(the browser reports 21 ms output latency\)/);
  assert.match(probeText({ probeResult: { heard: false, output_ms: 21 } }), /not heard back/);
  // a page without a mic answers the kernel's request with the reason, and sends no frames
  const model = fakeModel();
  const engine = new mod.Engine(model, { isSecureContext: false });
  engine.onMessage({ type: "latency_test" });
  await new Promise((done) => setTimeout(done, 0));
  const [[result]] = model.sent;
  assert.equal(result.type, "latency_result");
  assert.equal(result.heard, false);
  assert.match(result.error, /secure page/);
});

test("the echo gate closes the mic while agent audio is owed, and opens a tail after", async () => {
  const engine = new mod.Engine(fakeModel(), {});
  const gates = [];
  engine.capture = { port: { postMessage: (m) => gates.push(m.on) } };
  engine.onPlayer({ type: "progress", playing: true, busy: true, played: 0 });
  assert.equal(engine.gated, true);
  // a gap between two sentences: the player is not playing, yet the reply is not over
  engine.onPlayer({ type: "progress", playing: false, busy: true, played: 0 });
  assert.equal(engine.gated, true);
  engine.onPlayer({ type: "progress", playing: false, busy: false, played: 0 });
  assert.equal(engine.gated, true); // the last sample still has to leave the speaker
  await new Promise((done) => setTimeout(done, 350));
  assert.equal(engine.gated, false);
  assert.deepEqual(gates, [true, false]);
});

test("with headphones the mic stays open, and a barge-in opens it at once", () => {
  const engine = new mod.Engine(fakeModel(), {});
  engine.capture = { port: { postMessage() {} } };
  engine.onPlayer({ type: "progress", playing: true, busy: true, played: 0 });
  assert.equal(engine.gated, true);
  engine.setHeadphones(true);
  assert.equal(engine.gated, false);
  engine.setHeadphones(false);
  assert.equal(engine.gated, true);
  engine.onPlayer({ type: "flushed", item: "i1", played: 2400, reason: "user" });
  assert.equal(engine.gated, false);
});

test("a typed turn's flush is reported: where the reply was cut, then that the page stopped", () => {
  const model = fakeModel();
  const engine = new mod.Engine(model, {});
  // no audio ever played: nothing to cut, the kernel hears at once that the page has stopped
  engine.onMessage({ type: "flush", reason: "turn" });
  assert.deepEqual(model.sent.map(([m]) => m), [{ type: "turn_flushed" }]);
  model.sent.length = 0;
  const posted = [];
  engine.playerReady = Promise.resolve();
  engine.player = { port: { postMessage: (m) => posted.push(m) }, context: {} };
  engine.onMessage({ type: "flush", reason: "turn" });
  assert.deepEqual(posted, [{ type: "flush", reason: "turn" }]);
  engine.onPlayer({ type: "flushed", item: "i1", played: 24000, reason: "turn" });
  assert.deepEqual(model.sent.map(([m]) => m), [
    { type: "playback_stopped", item_id: "i1", audio_end_ms: 1000, reason: "turn" },
    { type: "turn_flushed" }]);
  // the reply had already played to its end: no cut, but the report still comes
  model.sent.length = 0;
  engine.onPlayer({ type: "flushed", item: null, played: 0, reason: "turn" });
  assert.deepEqual(model.sent.map(([m]) => m), [{ type: "turn_flushed" }]);
  // a barge-in's flush reports the cut only, as before
  model.sent.length = 0;
  engine.onPlayer({ type: "flushed", item: "i2", played: 2400, reason: "user" });
  assert.deepEqual(model.sent.map(([m]) => m.type), ["playback_stopped"]);
});

test("back-channel audio plays beside the reply player, uncounted and untimed", async () => {
  const started = [];
  class FakeSource {
    connect() {}
    start(at) { started.push([this.buffer.length, at]); }
  }
  const ctx = {
    currentTime: 1, destination: {},
    createBuffer: (ch, n) => ({ length: n, duration: n / 24000, getChannelData: () => new Float32Array(n) }),
    createBufferSource: () => new FakeSource(),
  };
  const model = fakeModel();
  const engine = new mod.Engine(model, {});
  engine.ensurePlayback = async () => { engine.playCtx = ctx; };
  const chunk = new Uint8Array(4800);  // 100 ms
  engine.onMessage({ type: "backchannel", id: "bc" }, [new DataView(chunk.buffer)]);
  engine.onMessage({ type: "backchannel", id: "bc" }, [new DataView(chunk.buffer)]);
  await new Promise((done) => setTimeout(done, 0));
  assert.deepEqual(started, [[2400, 1], [2400, 1.1]]);  // queued one after the other
  assert.equal(engine.pending.length, 0);  // nothing went to the reply player
  assert.equal(engine.stats.pushedBytes, 0);
  assert.equal(model.sent.length, 0);  // no playback_started, no reply_audio_ack
});

test("transport: a lost probe buffer switches mic frames to base64; the kernel hears back", () => {
  const model = fakeModel();
  const engine = new mod.Engine(model, {});
  engine.micOn = true;
  // the kernel saw no intact buffer, and its own probe reaches us without one (Colab's manager)
  engine.onMessage({ type: "transport_check", up: false, probe: mod.PROBE }, []);
  assert.deepEqual(model.sent.at(-1)[0], { type: "transport", up: false, down: false });
  engine.onFrame({ type: "frame", level: 0.1, buf: new Int16Array([1, -2, 300]).buffer });
  const [frame, buffers] = model.sent.at(-1);
  assert.equal(buffers, undefined);
  assert.deepEqual([...new Int16Array(mod.audioOf(frame, []).buffer)], [1, -2, 300]);
  // where buffers survive, both ways stay binary
  const fine = new mod.Engine(fakeModel(), {});
  fine.micOn = true;
  fine.onMessage({ type: "transport_check", up: true, probe: mod.PROBE },
                 [new DataView(new Uint8Array(mod.PROBE).buffer)]);
  assert.deepEqual(fine.model.sent.at(-1)[0], { type: "transport", up: true, down: true });
  fine.onFrame({ type: "frame", level: 0.1, buf: new Int16Array([5]).buffer });
  assert.equal(fine.model.sent.at(-1)[1].length, 1);
  // a probe that arrives altered is not intact
  assert.equal(mod.probeIntact([new DataView(new Uint8Array([0x52, 0x54, 0, 0]).buffer)],
                               mod.PROBE), false);
});

test("base64 audio from the kernel is played like a binary buffer, back-channel included", () => {
  const engine = new mod.Engine(fakeModel(), {});
  engine.ensurePlayback = async () => {};
  const pcm = new Uint8Array([1, 0, 2, 0, 3, 0]);
  engine.onMessage({ type: "reply_audio", item_id: "i1", b64: Buffer.from(pcm).toString("base64") });
  assert.deepEqual([...new Uint8Array(engine.pending[0][0].buf)], [1, 0, 2, 0, 3, 0]);
  assert.equal(engine.stats.pushedBytes, 6);
  engine.onMessage({ type: "reply_audio", item_id: "i1" }); // neither buffer nor base64: nothing
  assert.equal(engine.pending.length, 1);
  const big = new Uint8Array(100_000).map((_, i) => i % 251);
  assert.deepEqual(new Uint8Array(mod.audioOf({ b64: bytesToBase64(big) }, []).buffer), big);
});

test("push-to-talk: frames flow only while held, the agent is cut on press, release ends it",
  async () => {
    const model = fakeModel();
    const engine = new mod.Engine(model, {});
    engine.micOn = true; // started already (the first press starts it)
    engine.pttMode = true;
    const frame = () => engine.onFrame({ type: "frame", level: 0, buf: new ArrayBuffer(1920) });
    frame();
    assert.equal(engine.stats.framesSent, 0); // not held: the mic sends nothing
    const posted = [];
    engine.post = (msg) => posted.push(msg);
    engine.agentBusy = true;
    engine.gated = true;
    await engine.pttDown();
    assert.deepEqual(posted, [{ type: "flush", reason: "user" }]); // the agent stops at once
    assert.equal(engine.gated, false); // and the echo gate does not hold the user's voice
    assert.deepEqual(model.sent.at(-1)[0], { type: "ptt", on: true });
    frame();
    frame();
    assert.equal(engine.stats.framesSent, 2);
    engine.pttUp();
    frame(); // the release tail keeps the end of the last word
    assert.equal(engine.stats.framesSent, 3);
    await new Promise((done) => setTimeout(done, 300));
    assert.deepEqual(model.sent.at(-1)[0], { type: "ptt", on: false });
    frame();
    assert.equal(engine.stats.framesSent, 3);
    // Start mic from push-to-talk: hands-free again, the mic stays on and sends
    await engine.handsFree();
    assert.deepEqual(model.sent.at(-1)[0], { type: "mic", on: true, ptt: false });
    frame();
    assert.equal(engine.stats.framesSent, 4);
  });

/** A model as anywidget hands it over: custom messages in, messages sent out. */
function listeningModel() {
  const handlers = new Set();
  return {
    sent: [], handlers,
    get: () => "",
    on: (name, fn) => { if (name === "msg:custom") handlers.add(fn); },
    off: (name, fn) => { if (name === "msg:custom") handlers.delete(fn); },
    send(msg, cb, buffers) { this.sent.push([msg, buffers]); },
    feed(msg, buffers) { for (const fn of handlers) fn(msg, buffers); },
  };
}

test("the default export is a factory: each widget model gets its own engine", async () => {
  const { default: factory } = await importBundle("widget.js");
  assert.equal(typeof factory, "function");
  const [one, two] = [factory(), factory()];
  assert.notEqual(one, two);
  const [a, b] = [listeningModel(), listeningModel()];
  const closeA = one.initialize({ model: a });
  two.initialize({ model: b });
  for (const model of [a, b]) { // each says it is ready once, with the probe as a buffer
    assert.equal(model.sent.length, 1);
    const [msg, buffers] = model.sent[0];
    assert.deepEqual(msg, { type: "ready", probe: mod.PROBE });
    assert.deepEqual([...new Uint8Array(buffers[0])], mod.PROBE);
  }
  // the kernel's answer to one model is answered by that model's engine alone
  a.feed({ type: "transport_check", up: true, probe: mod.PROBE },
         [new DataView(new Uint8Array(mod.PROBE).buffer)]);
  assert.deepEqual(a.sent.at(-1)[0], { type: "transport", up: true, down: true });
  assert.equal(b.sent.length, 1);
  // the model's end stops its engine (the mic off) and stops listening; the other goes on
  closeA();
  assert.deepEqual(a.sent.at(-1)[0], { type: "mic", on: false });
  assert.equal(a.handlers.size, 0);
  b.feed({ type: "transport_check", up: false, probe: mod.PROBE }, []);
  assert.deepEqual(b.sent.at(-1)[0], { type: "transport", up: false, down: false });
});

test("sound the paused mic kept from the agent is said in the widget, not lost in silence",
  () => {
    const model = fakeModel();
    const engine = new mod.Engine(model, {});
    engine.capture = { port: { postMessage() {} } };
    engine.micOn = true;
    const frame = (level) => engine.onFrame({ type: "frame", level, buf: new ArrayBuffer(1920) });
    // ungated, loud frames are the user's turn, sent as they are
    for (let i = 0; i < 20; i++) frame(0.2);
    assert.equal(engine.unheard, false);
    engine.onPlayer({ type: "progress", playing: true, busy: true, played: 0 });
    assert.equal(engine.gated, true);
    // quiet frames, and a stray loud one, are no speech
    for (let i = 0; i < 20; i++) frame(i % 5 ? 0.001 : 0.2);
    assert.equal(engine.unheard, false);
    // words with short pauses between them
    for (let i = 0; i < 20; i++) frame(i % 4 === 3 ? 0.001 : 0.1);
    assert.equal(engine.unheard, true);
    engine.setHeadphones(true); // the gate opens: what was said before stays said
    assert.equal(engine.unheard, true);
    clearTimeout(engine.unheardTimer);
  });
