// Capture worklet: mic samples at the context's rate → PCM16 24 kHz mono frames, posted to the
// main thread as transferred ArrayBuffers, with the input level alongside. A render quantum
// allocates nothing: its buffers are made once (again only if the quantum's length changes);
// each finished 40 ms frame is a fresh buffer, since the one sent is transferred away.
import { Framer, LevelMeter, Resampler, TARGET_RATE } from "./dsp.js";

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameMs = (options && options.processorOptions && options.processorOptions.frameMs) || 40;
    this.resampler = new Resampler(sampleRate, TARGET_RATE);
    this.framer = new Framer(Math.round((TARGET_RATE * frameMs) / 1000));
    // when true, send silence (the agent is speaking and its echo would leak into the mic)
    this.gate = !!(options && options.processorOptions && options.processorOptions.gate);
    this.meter = new LevelMeter();
    this.blockLength = -1;
    this.sendFrame = this.sendFrame.bind(this);
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === "gate") this.gate = !!e.data.on;
    };
  }

  /** Make the per-quantum buffers for blocks of `n` samples, unless they fit already. */
  fitBlock(n) {
    if (n === this.blockLength) return;
    this.blockLength = n;
    this.mixed = new Float32Array(n);
    this.silence = new Float32Array(n);
    this.resampled = new Float32Array(this.resampler.maxOut(n));
  }

  /** The channels' average, in the buffer reused every quantum. */
  mix(input) {
    const mono = this.mixed;
    mono.fill(0);
    for (let c = 0; c < input.length; c++) {
      const ch = input[c];
      for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / input.length;
    }
    return mono;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || !input.length) return true;
    this.fitBlock(input[0].length);
    const mono = input.length > 1 ? this.mix(input) : input[0];
    this.meter.update(mono);
    const n = this.resampler.processInto(this.gate ? this.silence : mono, this.resampled);
    this.framer.push(this.resampled, this.sendFrame, n);
    return true;
  }

  /** A finished frame goes to the main thread, transferred: the next one needs a new buffer. */
  sendFrame(frame) {
    const next = new Int16Array(frame.length); // (before the transfer empties `frame`)
    const msg = { type: "frame", buf: frame.buffer, level: this.meter.level };
    this.port.postMessage(msg, [frame.buffer]);
    return next;
  }
}

registerProcessor("rt-capture", CaptureProcessor);
