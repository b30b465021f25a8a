// The latency probe: the browser's own audio round trip, measured by playing a chirp and
// finding its echo on the mic, and the one line the widget shows about it.
import PROBE_SRC from "worklet:probe";
import { addWorklet, micErrorText } from "./devices.js";
import { chirp, findChirp } from "./dsp.js";

const PROBE_AT_S = 0.3; // the chirp plays this long after the probe starts listening
const PROBE_LISTEN_MS = 1500;

/**
 * Play a chirp, listen for it on the mic (no echo cancellation, or it would be removed), and
 * time the echo on the audio clock. Returns the fields of the kernel's ``latency_result``
 * message: what the browser says of its latencies, the round trip if the echo was heard, or
 * the error's text.
 */
export async function measureRoundTrip(env) {
  const result = { heard: false };
  let stream = null;
  let ctx = null;
  try {
    stream = await env.navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false,
               autoGainControl: false },
    });
    const AC = env.AudioContext || env.webkitAudioContext;
    ctx = new AC({ latencyHint: "interactive" });
    await addWorklet(ctx, PROBE_SRC);
    const source = ctx.createMediaStreamSource(stream);
    const recorder = new env.AudioWorkletNode(ctx, "rt-probe");
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
  }
  return result;
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
