// Pure audio helpers shared by the worklets and the main thread; unit-tested with node --test.

export const TARGET_RATE = 24000;

/**
 * Float samples in [-1, 1] to PCM16; NaN becomes silence, overs clip. Converts
 * `input[start..end)` into `out` from index `at` (all of it by default).
 */
export function floatToPcm16(input, out = new Int16Array(input.length), start = 0,
                             end = input.length, at = 0) {
  for (let i = start; i < end; i++) {
    let s = input[i];
    if (!(s === s)) s = 0; // NaN
    s = s < -1 ? -1 : s > 1 ? 1 : s;
    out[at + i - start] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
  }
  return out;
}

/** PCM16 to float samples in [-1, 1). */
export function pcm16ToFloat(input, out = new Float32Array(input.length)) {
  for (let i = 0; i < input.length; i++) out[i] = input[i] / 32768;
  return out;
}

/** Root-mean-square level of float samples. */
export function rms(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return samples.length ? Math.sqrt(sum / samples.length) : 0;
}

/**
 * The mic level for the widget's meter: each block's RMS, or the last level less 10% when that
 * is higher, so the meter falls back smoothly. `update` keeps the level in a field and returns
 * nothing: a block costs no allocation, even where the call is not inlined.
 */
export class LevelMeter {
  constructor() {
    this.level = 0;
  }

  update(samples) {
    let sum = 0;
    for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
    const now = samples.length ? Math.sqrt(sum / samples.length) : 0;
    this.level = Math.max(now, this.level * 0.9);
  }
}

/**
 * Streaming resampler: any input rate to `outRate`, block by block, keeping its phase across
 * blocks. Downsampling first runs a windowed-sinc low-pass at the output Nyquist so speech
 * energy above 12 kHz does not fold back; then linear interpolation picks the samples.
 * `processInto` allocates nothing once it has seen a block as long.
 */
export class Resampler {
  constructor(inRate, outRate = TARGET_RATE, taps = 31) {
    if (!(inRate > 0) || !(outRate > 0)) throw new RangeError(`bad rates ${inRate} → ${outRate}`);
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate;
    this.pos = 0; // position of the next output sample, in input samples, relative to `hist`
    this.kernel = inRate > outRate ? lowpass(taps, (0.5 * outRate) / inRate * 0.9) : null;
    this.history = this.kernel ? this.kernel.length - 1 : 0;
    this.work = new Float32Array(this.history); // the filter's history, then the block
    this.filtered = new Float32Array(0);
    this.prev = 0; // last filtered sample of the previous block
  }

  /** The most samples a block of `n` can give: an output buffer this long always fits. */
  maxOut(n) {
    return Math.ceil(n / this.step) + 2;
  }

  /** The low-passed block (its first `input.length` samples), in a buffer reused each call. */
  _filter(input) {
    if (!this.kernel) return input;
    const k = this.kernel;
    const taps = k.length;
    const h = this.history;
    const n = input.length;
    if (this.work.length < h + n) {
      const work = new Float32Array(h + n);
      work.set(this.work.subarray(0, h));
      this.work = work;
    }
    if (this.filtered.length < n) this.filtered = new Float32Array(n);
    const buf = this.work;
    const out = this.filtered;
    buf.set(input, h);
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < taps; j++) acc += k[j] * buf[i + j];
      out[i] = acc;
    }
    buf.copyWithin(0, n, n + h); // the block's last samples are the next block's history
    return out;
  }

  /** Resample one block into `out` (at least `maxOut(input.length)` long); returns the count. */
  processInto(input, out) {
    const x = this._filter(input);
    const len = input.length;
    let n = 0;
    // index -1 is the last sample of the previous block (this.prev)
    while (this.pos < len - 1) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const a = i < 0 ? this.prev : x[i];
      const b = x[i + 1];
      out[n++] = a + (b - a) * frac;
      this.pos += this.step;
    }
    this.pos -= len;
    if (len) this.prev = x[len - 1];
    return n;
  }

  /** Resample one block; returns a new Float32Array (possibly empty). */
  process(input) {
    const out = new Float32Array(this.maxOut(input.length));
    return out.slice(0, this.processInto(input, out));
  }
}

function lowpass(taps, cutoff) {
  // cutoff as a fraction of the input rate; Blackman-windowed sinc, unity gain at DC
  const k = new Float32Array(taps);
  const m = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - m;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (taps - 1)) +
      0.08 * Math.cos((4 * Math.PI * i) / (taps - 1));
    k[i] = sinc * w;
    sum += k[i];
  }
  for (let i = 0; i < taps; i++) k[i] /= sum;
  return k;
}

/** Collects samples into fixed-size PCM16 frames, allocating nothing itself. */
export class Framer {
  constructor(size) {
    this.size = size;
    this.buf = new Int16Array(size);
    this.fill = 0;
  }

  /**
   * Add the first `count` float samples. Each frame filled goes to `onFrame`, which returns
   * the Int16Array to fill next: a fresh one if it keeps or transfers the frame, else the same.
   */
  push(samples, onFrame, count = samples.length) {
    let i = 0;
    while (i < count) {
      const n = Math.min(this.size - this.fill, count - i);
      floatToPcm16(samples, this.buf, i, i + n, this.fill);
      this.fill += n;
      i += n;
      if (this.fill === this.size) {
        this.buf = onFrame(this.buf);
        this.fill = 0;
      }
    }
  }
}

const ignore = () => {};

/**
 * The playback queue: chunks per item, a prebuffer before starting (and after an underrun),
 * exact accounting of the samples actually rendered per item, and an instant flush.
 */
export class JitterBuffer {
  constructor(prebuffer) {
    this.prebuffer = prebuffer; // samples to hold before starting
    this.chunks = []; // {item, data: Float32Array, offset}
    this.queued = 0;
    this.buffering = true;
    this.ended = new Set(); // items whose last chunk has arrived
    this.played = new Map(); // item -> samples rendered
    this.underruns = 0;
    this.current = null;
    this.dropped = new Set(); // flushed items: their late chunks are not played
  }

  push(item, data) {
    if (!data.length || this.dropped.has(item)) return;
    this.chunks.push({ item, data, offset: 0 });
    this.queued += data.length;
  }

  end(item) {
    this.ended.add(item);
  }

  /**
   * Fill `out` (a Float32Array); calls `onStart(item)` for each item whose first sample this
   * call renders. Allocates nothing.
   */
  render(out, onStart = ignore) {
    out.fill(0);
    if (this.buffering) {
      const last = this.chunks.length ? this.chunks[this.chunks.length - 1].item : null;
      if (this.queued >= this.prebuffer || (last !== null && this.ended.has(last))) {
        this.buffering = false;
      } else {
        return;
      }
    }
    let i = 0;
    while (i < out.length && this.chunks.length) {
      const c = this.chunks[0];
      if (c.item !== this.current) {
        this.current = c.item;
        if (!this.played.has(c.item)) onStart(c.item);
      }
      const n = Math.min(out.length - i, c.data.length - c.offset);
      const data = c.data;
      for (let k = 0; k < n; k++) out[i + k] = data[c.offset + k];
      c.offset += n;
      i += n;
      this.queued -= n;
      this.played.set(c.item, (this.played.get(c.item) || 0) + n);
      if (c.offset === c.data.length) this.chunks.shift();
    }
    if (i < out.length && !this.chunks.length) {
      const ended = this.current !== null && this.ended.has(this.current);
      if (!ended && i > 0) this.underruns++;
      this.buffering = true;
    }
  }

  /**
   * Drop everything queued, and whatever still arrives for the items dropped (a cancelled
   * reply keeps streaming for a moment); returns {item, played} for the item that was playing.
   */
  flush() {
    // the item being cut: the one playing, or else the next one queued; an item that has
    // already played to its end is not cut (nothing of it was lost)
    const cur = this.current;
    const unfinished = cur !== null &&
      (!this.ended.has(cur) || this.chunks.some((c) => c.item === cur));
    const item = unfinished ? cur : this.chunks.length ? this.chunks[0].item : null;
    for (const id of [this.current, ...this.chunks.map((c) => c.item)]) {
      if (id !== null && !this.ended.has(id)) {
        this.dropped.add(id);
        this.ended.add(id);
      }
    }
    this.chunks = [];
    this.queued = 0;
    this.buffering = true;
    return { item, played: item === null ? 0 : this.played.get(item) || 0 };
  }

  get playing() {
    return !this.buffering && this.queued > 0;
  }

  /** Audio is playing, queued, or still owed: an item started and its end has not come. */
  get busy() {
    return this.queued > 0 || (this.current !== null && !this.ended.has(this.current));
  }
}

/** A Hann-windowed linear sweep from `f0` to `f1` Hz: the latency probe's test signal. */
export function chirp(rate, ms = 60, f0 = 800, f1 = 6000, amp = 0.6) {
  const n = Math.round((rate * ms) / 1000);
  const out = new Float32Array(n);
  const seconds = n / rate;
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const phase = 2 * Math.PI * (f0 * t + ((f1 - f0) * t * t) / (2 * seconds));
    const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1));
    out[i] = amp * w * Math.sin(phase);
  }
  return out;
}

/**
 * Where `template` starts in `signal`: the lag with the highest normalised cross-correlation.
 * Returns {index, score} (score in [0, 1]) or null when nothing scores `minScore` — noise alone
 * scores about 1/sqrt(template length), a clear echo well above 0.3.
 */
export function findChirp(signal, template, minScore = 0.3) {
  const n = template.length;
  if (signal.length < n) return null;
  let tplEnergy = 0;
  for (let j = 0; j < n; j++) tplEnergy += template[j] * template[j];
  let windowEnergy = 0;
  for (let j = 0; j < n; j++) windowEnergy += signal[j] * signal[j];
  let best = null;
  for (let lag = 0; lag + n <= signal.length; lag++) {
    if (lag > 0) {
      const gone = signal[lag - 1];
      const added = signal[lag + n - 1];
      windowEnergy += added * added - gone * gone;
    }
    if (windowEnergy <= 1e-12) continue;
    let dot = 0;
    for (let j = 0; j < n; j++) dot += signal[lag + j] * template[j];
    const score = Math.abs(dot) / Math.sqrt(tplEnergy * windowEnergy);
    if (!best || score > best.score) best = { index: lag, score };
  }
  return best && best.score >= minScore ? best : null;
}

/** Bytes as base64 (for front ends that drop binary comm buffers). */
export function bytesToBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

/** The bytes of a base64 string, as a DataView (the shape binary buffers arrive in). */
export function base64ToView(b64) {
  const text = atob(b64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return new DataView(bytes.buffer);
}
