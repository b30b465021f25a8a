// Playback worklet: PCM16 24 kHz chunks per item through a jitter buffer; reports when an item
// starts, how many samples of it were played, and answers a flush at once. A render quantum
// allocates nothing; only its messages to the main thread (an item started, and progress on a
// change or every 32 quanta) are new objects.
import { JitterBuffer, pcm16ToFloat, Resampler, TARGET_RATE } from "./dsp.js";

class PlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const prebufferMs = (options && options.processorOptions && options.processorOptions.prebufferMs) || 100;
    this.buffer = new JitterBuffer(Math.round((sampleRate * prebufferMs) / 1000));
    this.resampler = sampleRate === TARGET_RATE ? null : new Resampler(TARGET_RATE, sampleRate);
    this.quanta = 0;
    this.wasBusy = false;
    this.ratio = TARGET_RATE / sampleRate; // played samples are reported at 24 kHz
    this.onStarted = this.onStarted.bind(this);
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "push") {
      let data = pcm16ToFloat(new Int16Array(msg.buf));
      if (this.resampler) data = this.resampler.process(data);
      this.buffer.push(msg.item, data);
    } else if (msg.type === "end") {
      this.buffer.end(msg.item);
    } else if (msg.type === "flush") {
      const { item, played } = this.buffer.flush();
      this.port.postMessage({ type: "flushed", item, played: Math.round(played * this.ratio),
                              reason: msg.reason });
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const wasPlaying = this.buffer.playing;
    this.buffer.render(out, this.onStarted);
    for (let ch = 1; ch < outputs[0].length; ch++) outputs[0][ch].set(out);
    this.quanta++;
    const playing = this.buffer.playing;
    const busy = this.buffer.busy;
    if (playing !== wasPlaying || busy !== this.wasBusy || this.quanta % 32 === 0) {
      this.report(playing, busy);
    }
    return true;
  }

  /** An item's first sample was rendered. */
  onStarted(item) {
    this.port.postMessage({ type: "started", item });
  }

  /** Progress for the main thread: on a change, and every 32 quanta (85 ms at 48 kHz). */
  report(playing, busy) {
    this.wasBusy = busy;
    const item = this.buffer.current;
    this.port.postMessage({
      type: "progress", playing, busy, item,
      played: item === null ? 0 : Math.round((this.buffer.played.get(item) || 0) * this.ratio),
      underruns: this.buffer.underruns,
    });
  }
}

registerProcessor("rt-player", PlayerProcessor);
