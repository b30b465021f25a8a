// Capture worklet: mic samples at the context's rate → PCM16 24 kHz mono frames, posted to the
// main thread as transferred ArrayBuffers, with the input level alongside.
import { Framer, Resampler, rms, TARGET_RATE } from "./dsp.js";

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameMs = (options && options.processorOptions && options.processorOptions.frameMs) || 40;
    this.resampler = new Resampler(sampleRate, TARGET_RATE);
    this.framer = new Framer(Math.round((TARGET_RATE * frameMs) / 1000));
    // when true, send silence (the agent is speaking and its echo would leak into the mic)
    this.gate = !!(options && options.processorOptions && options.processorOptions.gate);
    this.level = 0;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === "gate") this.gate = !!e.data.on;
    };
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || !input.length) return true;
    let mono = input[0];
    if (input.length > 1) {
      mono = new Float32Array(input[0].length);
      for (const ch of input) for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / input.length;
    }
    this.level = Math.max(rms(mono), this.level * 0.9);
    const samples = this.resampler.process(this.gate ? new Float32Array(mono.length) : mono);
    for (const frame of this.framer.push(samples)) {
      this.port.postMessage({ type: "frame", buf: frame.buffer, level: this.level }, [frame.buffer]);
    }
    return true;
  }
}

registerProcessor("rt-capture", CaptureProcessor);
