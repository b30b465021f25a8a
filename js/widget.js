// The voice chat widget for anywidget: mic capture and playback (initialize, once per model)
// and the UI (render, once per view).
import { Engine, PROBE } from "./engine.js";
import { renderView } from "./view.js";

// the engine, for pages that drive it without a widget manager (the browser tests)
export { Engine } from "./engine.js";

const ENGINES = new Map(); // widget key -> Engine, shared by initialize and every render

function render({ model, el }) {
  return renderView(ENGINES.get(model.get("_key")), model, el);
}

function initialize({ model }) {
  const engine = new Engine(model);
  const key = model.get("_key");
  ENGINES.set(key, engine);
  const onMsg = (msg, buffers) => engine.onMessage(msg, buffers);
  model.on("msg:custom", onMsg);
  try {
    model.send({ type: "ready", probe: PROBE }, undefined, [new Uint8Array(PROBE).buffer]);
  } catch (err) { // a manager that refuses buffers outright: the probe is lost all the same
    model.send({ type: "ready", probe: PROBE });
  }
  return () => {
    model.off("msg:custom", onMsg);
    engine.destroy();
    ENGINES.delete(key);
  };
}

export default { initialize, render };
