// The voice chat widget for anywidget, in its factory form: anywidget calls the default export
// once per widget model, then `initialize` once for that model and `render` once per view, so
// the model's audio engine lives in this closure and every view of the model shares it.
import { Engine, PROBE } from "./engine.js";
import { renderView } from "./view.js";

// the engine, for pages that drive it without a widget manager (the browser tests)
export { Engine } from "./engine.js";

/** Tell the kernel the page is up, with the transport probe as a binary buffer. */
function sayReady(model) {
  try {
    model.send({ type: "ready", probe: PROBE }, undefined, [new Uint8Array(PROBE).buffer]);
  } catch (err) { // a manager that refuses buffers outright: the probe is lost all the same
    model.send({ type: "ready", probe: PROBE });
  }
}

export default () => {
  let engine = null;
  return {
    initialize({ model }) {
      const own = new Engine(model);
      engine = own;
      const onMsg = (msg, buffers) => own.onMessage(msg, buffers);
      model.on("msg:custom", onMsg);
      sayReady(model);
      return () => {
        model.off("msg:custom", onMsg);
        own.destroy();
        if (engine === own) engine = null;
      };
    },
    render({ model, el }) {
      return renderView(engine, model, el);
    },
  };
};
