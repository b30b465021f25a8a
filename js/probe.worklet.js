// Latency probe worklet: passes the mic's samples to the main thread in blocks, each stamped
// with the context frame it was rendered at, so a chirp's echo can be placed on the same clock
// as the chirp itself.
class ProbeProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.on = true;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === "stop") this.on = false;
    };
  }

  process(inputs) {
    const input = inputs[0];
    if (this.on && input && input.length) {
      // eslint-disable-next-line no-undef
      this.port.postMessage({ frame: currentFrame, buf: input[0].slice() });
    }
    return this.on;
  }
}

registerProcessor("rt-probe", ProbeProcessor);
