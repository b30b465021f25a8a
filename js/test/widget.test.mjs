// Main-thread pieces of the widget that need no browser: mic diagnostics and message handling.
import { test } from "node:test";
import assert from "node:assert/strict";
import { build } from "esbuild";

const bundled = await build({
  entryPoints: [new URL("../widget.js", import.meta.url).pathname], bundle: true, write: false,
  format: "esm", plugins: [{ name: "w", setup(b) {
    b.onResolve({ filter: /^worklet:/ }, (a) => ({ path: a.path, namespace: "w" }));
    b.onLoad({ filter: /.*/, namespace: "w" }, () => ({ contents: "", loader: "text" }));
  } }],
});
const mod = await import(`data:text/javascript,${encodeURIComponent(bundled.outputFiles[0].text)}`);

test("an insecure page, a missing API and a denied mic each get a plain message", () => {
  assert.match(mod.micProblem({ isSecureContext: false }), /secure page.*https.*localhost/);
  assert.match(mod.micProblem({ isSecureContext: true, navigator: {} }), /no microphone API/);
  const ok = { isSecureContext: true, AudioWorkletNode: class {},
               navigator: { mediaDevices: { getUserMedia() {} } } };
  assert.equal(mod.micProblem(ok), null);
  assert.match(mod.micErrorText({ name: "NotAllowedError" }), /permission was denied/);
  assert.match(mod.micErrorText({ name: "NotFoundError" }), /No microphone was found/);
  assert.match(mod.micErrorText({ name: "NotReadableError" }), /in use/);
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
  engine.onMessage({ type: "ack", seq: 10 });
  assert.equal(engine.busy, false);
  engine.seq = 40;
  assert.equal(engine.busy, true);
  engine.onMessage({ type: "ack", seq: 40 });
  assert.equal(engine.busy, false);
});

test("audio for the player is queued until the player exists, copied out of the message", () => {
  const engine = new mod.Engine(fakeModel(), {});
  engine.ensurePlayback = async () => {};
  const bytes = new Uint8Array([1, 0, 2, 0]);
  engine.onMessage({ type: "audio", item_id: "i1" }, [new DataView(bytes.buffer)]);
  assert.equal(engine.pending.length, 1);
  const [msg] = engine.pending[0];
  assert.equal(msg.type, "push");
  assert.deepEqual([...new Uint8Array(msg.buf)], [1, 0, 2, 0]);
  assert.notEqual(msg.buf, bytes.buffer);
  assert.equal(engine.stats.pushedBytes, 4);
});

test("the latency probe says what it measured, or why it could not", async () => {
  assert.equal(mod.probeText({}), "");
  assert.match(mod.probeText({ probing: true }), /Measuring/);
  assert.match(mod.probeText({ probeResult: { heard: true, roundtrip_ms: 142.4, output_ms: 21 } }),
               /round trip: 142 ms \(the browser reports 21 ms output latency\)/);
  assert.match(mod.probeText({ probeResult: { heard: false, output_ms: 21 } }), /not heard back/);
  // a page without a mic answers the kernel's request with the reason, and sends no frames
  const model = fakeModel();
  const engine = new mod.Engine(model, { isSecureContext: false });
  engine.onMessage({ type: "probe" });
  await new Promise((done) => setTimeout(done, 0));
  const [[result]] = model.sent;
  assert.equal(result.type, "probe_result");
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
  assert.equal(model.sent.length, 0);  // no playback_started, no audio_ack
});
