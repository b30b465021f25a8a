// The worklets' render quanta allocate nothing: measured with V8's sampling heap profiler over
// thousands of quanta, once the code is warm (optimised, as in a browser's audio thread).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Session } from "node:inspector/promises";
import v8 from "node:v8";
import { importBundle } from "../bundle.mjs";

// what the code allocates as written, not what the optimiser happens to remove by inlining a
// call or proving an object never escapes (a browser may not do either)
v8.setFlagsFromString("--no-turbo-escape");
v8.setFlagsFromString("--no-turbo-inlining");

const registry = {};
globalThis.sampleRate = 48000;
globalThis.AudioWorkletProcessor = class {
  constructor() {
    this.sent = 0;
    this.last = null;
    // as a real port: the message is copied (so it escapes) and transferred buffers detached
    this.port = { onmessage: null, postMessage: (msg, transfer = []) => {
      this.sent++;
      this.last = structuredClone(msg, { transfer });
    } };
  }
};
globalThis.registerProcessor = (name, cls) => { registry[name] = cls; };
await importBundle("capture.worklet.js");
await importBundle("player.worklet.js");

const WARM_UP = 20_000;
const QUANTA = 10_000;

/** What `run(QUANTA)` allocated, as the profiler saw it (after `run(WARM_UP)`): for each
 * function that allocated, its stack of function names and the bytes. */
async function allocations(run) {
  run(WARM_UP);
  const session = new Session();
  session.connect();
  try {
    await session.post("HeapProfiler.enable");
    await session.post("HeapProfiler.startSampling", { samplingInterval: 32,
      includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    run(QUANTA);
    const { profile } = await session.post("HeapProfiler.stopSampling");
    const found = [];
    (function walk(node, stack) {
      const here = [...stack, node.callFrame.functionName];
      if (node.selfSize) found.push({ stack: here, bytes: node.selfSize });
      for (const child of node.children) walk(child, here);
    })(profile.head, []);
    return found;
  } finally {
    session.disconnect();
  }
}

/**
 * What the quanta themselves allocated: inside `process`, outside the functions that make the
 * messages and buffers sent to the main thread (and the main thread's own messages). It must
 * stay under 4 bytes a quantum: one object each quantum would be 16 bytes or more; what is
 * left is per item (its entry in the played-samples map) or the profiler's noise.
 */
function checkPerQuantum(found, sending) {
  const inQuanta = found.filter(({ stack }) => stack.includes("process") &&
    !stack.some((name) => sending.includes(name)));
  const bytes = inQuanta.reduce((n, a) => n + a.bytes, 0);
  assert.ok(bytes < 4 * QUANTA, `${bytes} bytes in ${QUANTA} quanta: ${JSON.stringify(inQuanta)}`);
}

test("the capture worklet allocates nothing per quantum, stereo or mono, gated or not",
  async () => {
    const node = new registry["rt-capture"]({ processorOptions: { frameMs: 40 } });
    let seed = 1;
    const noise = () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.5;
    const left = Float32Array.from({ length: 128 }, noise);
    const stereo = [[left, Float32Array.from({ length: 128 }, noise)]];
    const mono = [[left]];
    const gate = (on) => node.port.onmessage({ data: { type: "gate", on } });
    const found = await allocations((quanta) => {
      for (let q = 0; q < quanta; q++) {
        if (q % 1000 === 0) gate(q % 2000 === 0);
        node.process(q % 3 ? stereo : mono);
      }
    });
    // 48 kHz in, 40 ms frames out: one every 15 quanta, each a buffer of its own (transferred)
    assert.ok(node.sent >= (WARM_UP + QUANTA) / 15 - 1, `frames sent: ${node.sent}`);
    checkPerQuantum(found, ["sendFrame"]);
    const frames = found.filter(({ stack }) => stack.includes("sendFrame"))
      .reduce((n, a) => n + a.bytes, 0);
    assert.ok(frames > QUANTA, `the profiler saw the frames' buffers: ${frames} bytes`);
  });

test("the player worklet allocates nothing per quantum, playing or between items", async () => {
  const node = new registry["rt-player"]({ processorOptions: { prebufferMs: 100 } });
  const out = [[new Float32Array(128), new Float32Array(128)]];
  const chunk = new Int16Array(60_000).fill(3000); // 2.5 s at 24 kHz: 937.5 quanta at 48 kHz
  let items = 0;
  const feed = () => { // messages from the main thread (not quanta)
    const item = `item_${items++}`;
    node.port.onmessage({ data: { type: "push", item, buf: chunk.buffer.slice(0) } });
    node.port.onmessage({ data: { type: "end", item } });
  };
  let quantum = 0;
  const found = await allocations((quanta) => {
    for (let q = 0; q < quanta; q++, quantum++) {
      if (quantum % 1000 === 0) feed(); // 938 quanta of audio, then 62 of silence
      node.process([], out);
    }
  });
  assert.ok(items === 30 && node.sent > 2 * items, `${items} items, ${node.sent} messages`);
  checkPerQuantum(found, ["onStarted", "report", "onMessage"]);
});

test("the capture worklet sends 40 ms frames of the channels' average, silence while gated", () => {
  const node = new registry["rt-capture"]({ processorOptions: { frameMs: 40 } });
  const frames = [];
  node.port.postMessage = (msg, transfer) => {
    assert.deepEqual(transfer, [msg.buf]);
    frames.push(structuredClone(msg, { transfer })); // the worklet's buffer is detached
  };
  const stereo = [[new Float32Array(128).fill(0.5), new Float32Array(128).fill(0.1)]];
  for (let q = 0; q < 30; q++) node.process(stereo);
  node.port.onmessage({ data: { type: "gate", on: true } });
  for (let q = 0; q < 30; q++) node.process(stereo);
  assert.equal(frames.length, 4); // 60 quanta at 48 kHz: 4 frames of 960 samples at 24 kHz
  const pcm = frames.map((f) => new Int16Array(f.buf));
  assert.ok(pcm.every((p) => p.length === 960));
  assert.ok(Math.abs(pcm[1][500] - 0.3 * 32767) <= 2, `${pcm[1][500]}`); // (0.5 + 0.1) / 2
  assert.ok(Math.abs(frames[1].level - 0.3) < 1e-6);
  assert.ok(pcm[3].every((s) => s === 0)); // gated: silence, once the filter's tail is out
});
