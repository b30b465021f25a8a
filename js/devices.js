// What the browser's audio needs and says: whether a mic can work on this page, plain words
// for a mic that failed, and loading an audio worklet from the bundle's text.

function moduleUrl(src) {
  return URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
}

/** Load an audio worklet module, given as source text, into `ctx`. */
export async function addWorklet(ctx, src) {
  const url = moduleUrl(src);
  try {
    await ctx.audioWorklet.addModule(url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** Why the mic cannot work here, or null. */
export function micProblem(win = globalThis) {
  if (!win.isSecureContext) {
    return "The microphone needs a secure page: open JupyterLab over https or at localhost " +
      "(an SSH tunnel works). Plain http to another host has no mic and no audio worklets.";
  }
  if (!win.navigator || !win.navigator.mediaDevices || !win.navigator.mediaDevices.getUserMedia) {
    return "This page has no microphone API (VS Code notebooks do not allow the mic).";
  }
  if (!win.AudioWorkletNode) return "This browser has no AudioWorklet support.";
  return null;
}

/** A mic error (from getUserMedia) in words a user can act on. */
export function micErrorText(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "Microphone permission was denied. Allow it in the browser's site settings and " +
      "press the mic button again.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return "No microphone was found. Plug one in and press the mic button again.";
  }
  if (name === "NotReadableError") return "The microphone is in use by another program.";
  return `The microphone could not start: ${err && err.message ? err.message : err}`;
}
