// One view of the widget (anywidget's ``render``): the bar of controls, the notices, the
// transcript and the text box, all drawn from the model's engine.
import { h, setData, setText } from "./dom.js";
import { probeText } from "./latency-probe.js";
import { transcriptRows } from "./transcript.js";

/** The hold-to-talk button: the mic is open only while it is pressed. */
function pushToTalkButton(engine) {
  const btn = h("button", { class: "rtw-ptt", type: "button",
    title: "Hold to talk (or hold Space while the widget has focus): the agent stops, and " +
      "answers when you let go. Best on laptop speakers." }, "Hold to talk");
  const up = () => engine.pttUp();
  btn.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    btn.setPointerCapture(e.pointerId);
    engine.pttDown().catch((err) => engine.fail(String(err)));
  });
  for (const name of ["pointerup", "pointercancel", "lostpointercapture"]) {
    btn.addEventListener(name, up);
  }
  return btn;
}

/** Space held while the widget has focus is push-to-talk: on the widget itself, not in the
 * text box, a list or on a button (Space presses a focused button, as everywhere). */
function listenPushToTalkKey(root, engine, model) {
  root.tabIndex = 0;
  const isSpace = (e) => e.code === "Space" && !model.get("ended") &&
    !["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(e.target.tagName);
  root.addEventListener("keydown", (e) => {
    if (!isSpace(e)) return;
    e.preventDefault();
    e.stopPropagation(); // JupyterLab's command-mode shortcuts must not see it
    if (!e.repeat) engine.pttDown().catch((err) => engine.fail(String(err)));
  });
  root.addEventListener("keyup", (e) => {
    if (!isSpace(e)) return;
    e.preventDefault();
    e.stopPropagation();
    engine.pttUp();
  });
}

/**
 * Draw one view of the widget into `el`: the controls, notices and transcript of `engine`,
 * redrawn at most once a frame as it or the model changes. Returns the view's cleanup.
 */
export function renderView(engine, model, el) {
  const state = h("span", { class: "rtw-state" });
  const meter = h("span", { class: "rtw-meter" }, h("span", { class: "rtw-meter-fill" }));
  const micBtn = h("button", { class: "rtw-mic", type: "button", onclick: () => {
    if (engine.micOn && !engine.pttMode) engine.stopMic();
    else engine.handsFree().catch((e) => engine.fail(String(e)));
  } });
  const stopBtn = h("button", { class: "rtw-stop", type: "button", title: "Stop the agent",
    onclick: () => { engine.flush("user"); model.send({ type: "interrupt" }); } }, "■ Stop");
  const probeBtn = h("button", { class: "rtw-probe", type: "button",
    title: "Measure this browser's audio round trip: plays a short chirp and listens for it " +
      "(use speakers; headphones keep the chirp from the mic)",
    onclick: () => { engine.probe().catch((e) => engine.fail(String(e))); } }, "Latency test");
  const pttBtn = pushToTalkButton(engine);
  const transport = h("span", { class: "rtw-transport", title: "How audio travels between " +
    "this page and the kernel: binary comm buffers, or base64 where the front end drops them" });
  const connBtn = h("button", { class: "rtw-conn", type: "button", onclick: () => {
    if (model.get("status") === "closed") model.send({ type: "connect" });
    else model.send({ type: "disconnect" });
  } });
  const phones = h("input", { type: "checkbox", onchange: () => {
    engine.setHeadphones(phones.checked);
  } });
  const provider = h("span", { class: "rtw-provider" });
  const cost = h("span", { class: "rtw-cost", title: "What the session has cost so far " +
    "(chat.cost in the notebook)" });
  const voicePick = h("select", { class: "rtw-voice", title: "Voice", onchange: () => {
    engine.voice = voicePick.value;
    model.send({ type: "voice", voice: voicePick.value });
  } });
  const notice = h("div", { class: "rtw-notice" });
  const error = h("div", { class: "rtw-error", role: "alert" });
  const transcript = h("div", { class: "rtw-transcript", "aria-live": "polite" });
  const input = h("input", { type: "text", class: "rtw-text-input",
                             placeholder: "Type a message and press Enter" });
  const submit = () => {
    const text = input.value.trim();
    if (!text) return;
    engine.ensurePlayback().catch(() => {});
    model.send({ type: "text", text });
    input.value = "";
  };
  // keys typed here are ours: JupyterLab's command-mode shortcuts must not see them
  input.addEventListener("keydown", (e) => {
    e.stopPropagation();
    if (e.key === "Enter") {
      e.preventDefault();
      submit();
    }
  });
  const form = h("form", { class: "rtw-form", onsubmit: (e) => { e.preventDefault(); submit(); } },
    input, h("button", { type: "submit" }, "Send"));
  const root = h("div", { class: "rtw" },
    h("div", { class: "rtw-bar" }, connBtn, micBtn, pttBtn, stopBtn, meter, state,
      h("label", { class: "rtw-phones", title: "With headphones the mic stays open while " +
        "the agent speaks, so you can interrupt by voice" }, phones, " headphones"), voicePick),
    // who answers, how audio travels and the latency test: one quiet line under the controls
    h("div", { class: "rtw-info" }, provider, cost, transport, probeBtn),
    notice, error, transcript, form);
  listenPushToTalkKey(root, engine, model);
  const controls = [connBtn, micBtn, pttBtn, stopBtn, probeBtn, phones, voicePick, input,
    form.querySelector("button")];
  el.append(root);

  const rows = transcriptRows(transcript);
  // The transcript follows new rows until the user scrolls up to read, and again once they
  // scroll back to the bottom. Decided when the user scrolls, not when rows arrive: rows out of
  // view have estimated heights and grow once laid out, after the scroll that showed them, so
  // the bottom is kept in view for a few frames after each draw.
  let follow = true;
  let ours = -1; // the scrollTop we set: its scroll event is not the user's
  transcript.addEventListener("rtw-cancel-tool",
    (event) => model.send({ type: "cancel_tool", call_id: event.detail }));
  transcript.addEventListener("rtw-mcp-approval", (event) => model.send({
    type: "mcp_approval", request_id: event.detail.request_id, approve: event.detail.approve }));
  transcript.addEventListener("scroll", () => {
    if (Math.abs(transcript.scrollTop - ours) < 1) return;
    follow = transcript.scrollTop + transcript.clientHeight >= transcript.scrollHeight - 80;
  }, { passive: true });
  const keepBottom = (frames, still = 0) => {
    if (!follow || !alive) return;
    if (transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight > 1) {
      transcript.scrollTop = transcript.scrollHeight;
      ours = transcript.scrollTop;
      still = 0;
    } else {
      still++;
    }
    if (frames > 0 && still < 2) requestAnimationFrame(() => keepBottom(frames - 1, still));
  };
  function update() {
    const rowsChanged = rows.sync(engine.rows);
    const status = model.get("status");
    const ended = !!model.get("ended");
    if (ended && engine.micOn) engine.stopMic();
    for (const c of controls) {
      const off = ended || (c === probeBtn && !!engine.probing);
      if (c.disabled !== off) c.disabled = off;
    }
    const busy = engine.busy;
    const label = status !== "connected" ? status :
      busy ? "kernel busy" : engine.playing ? "speaking" : model.get("phase") || "idle";
    setText(state, label);
    setData(root, {
      state: label, status,
      framesSent: engine.stats.framesSent, pushedBytes: engine.stats.pushedBytes,
      playedMs: Math.round(engine.stats.playedMs), started: engine.stats.started,
      underruns: engine.stats.underruns, micOn: engine.micOn, acked: engine.acked,
      ptt: engine.pttHeld, transport: model.get("transport"), ended,
    });
    pttBtn.classList.toggle("rtw-on", engine.pttHeld);
    setText(transport, model.get("transport") ? `audio: ${model.get("transport")}` : "");
    setText(micBtn, engine.micOn && !engine.pttMode ? "● Mic on" : "Start mic");
    micBtn.classList.toggle("rtw-on", engine.micOn && !engine.pttMode);
    setText(connBtn, status === "closed" ? "Connect" : "Disconnect");
    const width = `${Math.min(100, Math.round(engine.level * 400))}%`;
    if (meter.firstChild.style.width !== width) meter.firstChild.style.width = width;
    setText(provider, model.get("provider"));
    setText(cost, model.get("cost_text") || "");
    provider.title = model.get("provider");
    const names = engine.voices;
    if (voicePick.options.length !== names.length) {
      voicePick.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
      if (names.includes(engine.voice)) voicePick.value = engine.voice;
    }
    voicePick.style.display = names.length ? "" : "none";
    setText(notice, [ended ? "This chat is closed: its transcript stays here and in " +
      "chat.df. Start a new chat to talk again." : "", model.get("notice"), engine.pttMode ? "Push-to-talk: hold the " +
      "button (or Space) to talk; the agent stops, and answers when you let go." :
      engine.unheard && engine.micOn ? "The mic was paused while the agent spoke (no " +
      "headphones) and picked up sound: anything you said then was not heard. Say it again, " +
      "or tick headphones to interrupt by voice (■ Stop and Hold to talk work too)." :
      engine.gated && engine.micOn ?
      "Mic paused while the agent speaks (headphones recommended; ■ Stop interrupts)." : "",
      probeText(engine)].filter(Boolean).join(" "));
    setText(error, engine.message || model.get("error"));
    if (rowsChanged) {
      rows.draw(false);
      keepBottom(12);
    }
  }
  // redraw at most once a frame, however many messages arrive in between
  let queued = false;
  let alive = true;
  const schedule = () => {
    if (queued) return;
    queued = true;
    (globalThis.requestAnimationFrame || setTimeout)(() => {
      queued = false;
      if (alive) update();
    });
  };
  engine.listeners.add(schedule);
  const onChange = schedule;
  const TRAITS = ["status", "phase", "provider", "notice", "error", "transport", "ended",
    "cost_text"];
  for (const name of TRAITS) {
    model.on(`change:${name}`, onChange);
  }
  update();
  root.dataset.ready = "true";
  return () => {
    alive = false;
    engine.listeners.delete(schedule);
    for (const name of TRAITS) {
      model.off(`change:${name}`, onChange);
    }
  };
}
