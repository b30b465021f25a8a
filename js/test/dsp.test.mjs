import { test } from "node:test";
import assert from "node:assert/strict";
import { floatToPcm16, Framer, JitterBuffer, pcm16ToFloat, Resampler, rms } from "../dsp.js";

function sine(freq, rate, seconds, amp = 0.5) {
  const out = new Float32Array(Math.round(rate * seconds));
  for (let i = 0; i < out.length; i++) out[i] = amp * Math.sin((2 * Math.PI * freq * i) / rate);
  return out;
}

function resampleInBlocks(input, inRate, outRate, block = 128) {
  const r = new Resampler(inRate, outRate);
  const parts = [];
  for (let i = 0; i < input.length; i += block) parts.push(r.process(input.subarray(i, i + block)));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Float32Array(total);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

function zeroCrossingHz(x, rate) {
  let n = 0;
  for (let i = 1; i < x.length; i++) if ((x[i - 1] < 0) !== (x[i] < 0)) n++;
  return (n / 2) / (x.length / rate);
}

test("float to PCM16 clips, rounds and turns NaN into silence", () => {
  const pcm = floatToPcm16(Float32Array.from([0, 1, -1, 2, -2, NaN, 0.5]));
  assert.deepEqual([...pcm], [0, 32767, -32768, 32767, -32768, 0, 16384]);
  const back = pcm16ToFloat(pcm);
  assert.ok(Math.abs(back[6] - 0.5) < 1e-4);
});

for (const inRate of [48000, 44100, 16000, 24000]) {
  test(`resampler ${inRate} → 24000 keeps pitch and length across 128-sample blocks`, () => {
    const input = sine(440, inRate, 1.0);
    const out = resampleInBlocks(input, inRate, 24000);
    assert.ok(Math.abs(out.length - 24000) <= 2, `length ${out.length}`);
    const hz = zeroCrossingHz(out.subarray(2400), 24000);
    assert.ok(Math.abs(hz - 440) < 3, `frequency ${hz}`);
    assert.ok(Math.abs(rms(out.subarray(2400)) - 0.5 / Math.SQRT2) < 0.02);
  });
}

test("downsampling filters content above the new Nyquist instead of folding it back", () => {
  const out = resampleInBlocks(sine(18000, 48000, 0.5), 48000, 24000);
  // an 18 kHz tone would alias to 6 kHz at full strength without the low-pass
  assert.ok(rms(out.subarray(1000)) < 0.05, `aliased level ${rms(out)}`);
});

test("framer hands out fixed 40 ms frames and keeps the remainder", () => {
  const f = new Framer(960);
  const frames = [];
  const keep = (frame) => { frames.push(frame); return new Int16Array(960); };
  f.push(new Float32Array(900), keep);
  assert.equal(frames.length, 0);
  f.push(new Float32Array(1100), keep);
  assert.equal(frames.length, 2);
  assert.ok(frames.every((fr) => fr.length === 960));
  assert.equal(f.fill, 80);
});

test("jitter buffer waits for the prebuffer, then plays and counts samples per item", () => {
  const jb = new JitterBuffer(256);
  const out = new Float32Array(128);
  const started = [];
  const onStart = (item) => started.push(item);
  jb.push("a", new Float32Array(200).fill(0.5));
  jb.render(out, onStart);
  assert.deepEqual(started, []);
  assert.equal(out[0], 0);
  jb.push("a", new Float32Array(200).fill(0.5));
  jb.render(out, onStart);
  assert.deepEqual(started, ["a"]);
  assert.equal(out[127], 0.5);
  jb.render(out);
  jb.render(out);
  assert.equal(jb.played.get("a"), 384);
});

test("an item's end releases a short tail without waiting for the prebuffer", () => {
  const jb = new JitterBuffer(2400);
  const out = new Float32Array(128);
  jb.push("a", new Float32Array(100).fill(0.1));
  jb.render(out);
  assert.equal(jb.played.get("a"), undefined);
  jb.end("a");
  jb.render(out);
  assert.equal(jb.played.get("a"), 100);
  assert.equal(jb.underruns, 0);
});

test("running dry mid-item counts an underrun and buffers again", () => {
  const jb = new JitterBuffer(128);
  const out = new Float32Array(128);
  jb.push("a", new Float32Array(192));
  jb.render(out);
  jb.render(out);
  assert.equal(jb.underruns, 1);
  assert.equal(jb.buffering, true);
});

test("flush drops the queue and reports what was played of the current item", () => {
  const jb = new JitterBuffer(128);
  const out = new Float32Array(128);
  jb.push("a", new Float32Array(24000));
  jb.render(out);
  jb.render(out);
  const { item, played } = jb.flush();
  assert.equal(item, "a");
  assert.equal(played, 256);
  jb.render(out);
  assert.equal(jb.played.get("a"), 256);
  assert.equal(jb.queued, 0);
});

test("the buffer is busy while an item's audio is queued or still owed, not after its end", () => {
  const jb = new JitterBuffer(64);
  const out = new Float32Array(128);
  assert.equal(jb.busy, false);
  jb.push("a", new Float32Array(200).fill(0.1));
  assert.equal(jb.busy, true);
  jb.render(out);
  jb.render(out); // drained, but the item's end has not come: more audio is owed (a gap
  assert.equal(jb.queued, 0); // between sentences), so the agent is still speaking
  assert.equal(jb.busy, true);
  jb.end("a");
  assert.equal(jb.busy, false);
});

test("a flushed item's late chunks are dropped, and it no longer counts as owed", () => {
  const jb = new JitterBuffer(0);
  const out = new Float32Array(128);
  jb.push("a", new Float32Array(300).fill(0.1));
  jb.push("b", new Float32Array(100).fill(0.2));
  jb.render(out);
  jb.flush();
  assert.equal(jb.busy, false);
  jb.push("a", new Float32Array(300).fill(0.1)); // still in flight when the user barged in
  jb.push("b", new Float32Array(300).fill(0.1));
  assert.equal(jb.queued, 0);
  jb.push("c", new Float32Array(100).fill(0.3)); // the next reply plays
  assert.equal(jb.queued, 100);
});

test("a flush after an item played to its end cuts nothing; the next one queued is cut at 0", () => {
  const jb = new JitterBuffer(0);
  const out = new Float32Array(128);
  jb.push("a", new Float32Array(100).fill(0.1));
  jb.end("a");
  jb.render(out);
  jb.render(out);
  assert.deepEqual(jb.flush(), { item: null, played: 0 }); // the user spoke after it ended
  jb.push("b", new Float32Array(100).fill(0.1));
  assert.deepEqual(jb.flush(), { item: "b", played: 0 }); // queued, never heard
});

test("the probe finds its chirp's echo to the sample, through noise and attenuation", async () => {
  const { chirp, findChirp } = await import("../dsp.js");
  const rate = 48000;
  const tpl = chirp(rate);
  for (const delay of [0, 1234, 9000, 30000]) {
    const signal = new Float32Array(rate); // one second of room noise
    let seed = delay + 1;
    const noise = () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.05;
    for (let i = 0; i < signal.length; i++) signal[i] = noise();
    for (let i = 0; i < tpl.length; i++) signal[delay + i] += 0.1 * tpl[i]; // a quiet echo
    const found = findChirp(signal, tpl);
    assert.ok(found, `echo at ${delay} found`);
    assert.ok(Math.abs(found.index - delay) <= 1, `found at ${found.index}, placed at ${delay}`);
    assert.ok(found.score > 0.5);
  }
});

test("the probe reports nothing when only noise or silence came back", async () => {
  const { chirp, findChirp } = await import("../dsp.js");
  const tpl = chirp(48000);
  let seed = 99;
  const noise = Float32Array.from({ length: 48000 },
    () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.5);
  assert.equal(findChirp(noise, tpl), null);
  assert.equal(findChirp(new Float32Array(48000), tpl), null);
  assert.equal(findChirp(new Float32Array(10), tpl), null);
});
