// The playback worklet itself, with the AudioWorklet globals stubbed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { importBundle } from "../bundle.mjs";

const registry = {};
globalThis.sampleRate = 24000;
globalThis.AudioWorkletProcessor = class {
  constructor() {
    this.sent = [];
    this.port = { postMessage: (m) => this.sent.push(m), onmessage: null };
  }
};
globalThis.registerProcessor = (name, cls) => { registry[name] = cls; };

await importBundle("player.worklet.js");

test("the player plays pushed PCM16 after the prebuffer and answers flush with samples played", () => {
  const node = new registry["rt-player"]({ processorOptions: { prebufferMs: 10 } });
  const pcm = new Int16Array(4800).fill(16384);
  node.port.onmessage({ data: { type: "push", item: "item_1", buf: pcm.buffer } });
  const out = [[new Float32Array(128)]];
  for (let i = 0; i < 10; i++) node.process([], out);
  assert.ok(Math.abs(out[0][0][5] - 0.5) < 1e-6);
  assert.deepEqual(node.sent.find((m) => m.type === "started"), { type: "started", item: "item_1" });
  node.port.onmessage({ data: { type: "flush", reason: "server" } });
  const flushed = node.sent.find((m) => m.type === "flushed");
  assert.deepEqual(flushed, { type: "flushed", item: "item_1", played: 1280, reason: "server" });
  node.process([], out);
  assert.equal(out[0][0][5], 0);
});
