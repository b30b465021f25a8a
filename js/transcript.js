// The transcript: one element per conversation row, patched in place as a reply streams, the
// newest rows kept in the page and the older ones one button away.
import { h } from "./dom.js";

/** A running call's state: "running… reading 40%" and ✕ (which asks the view to cancel it,
 * through a bubbling ``rtw-cancel-tool`` event), or how it ended. */
function toolState(tool) {
  const running = tool.status === "running";
  let text = running ? (tool.background ? "running in the background…" : "running…") :
    tool.status;
  if (running && tool.progress) text += ` ${tool.progress}`;
  if (running && tool.fraction != null) text += ` ${Math.round(tool.fraction * 100)}%`;
  const el = h("div", { class: `rtw-tool-state rtw-tool-${tool.status}` }, text);
  if (running) {
    const cancel = h("button", { class: "rtw-tool-cancel", title: "cancel this call",
      onclick: () => el.dispatchEvent(new CustomEvent("rtw-cancel-tool",
        { bubbles: true, detail: tool.call_id })) }, "✕");
    el.append(cancel);
  }
  return el;
}

/** An MCP tool's approval request: who asks for what, and Approve / Deny until it is
 * answered (a bubbling ``rtw-mcp-approval`` event asks the view to send the answer). */
function approvalElement(approval) {
  const what = `${approval.server || "MCP"} asks to run ${approval.name}(${approval.arguments || ""})`;
  const el = h("div", { class: "rtw-approval" }, h("span", { class: "rtw-tool-head" }, what));
  if (approval.answer != null) {
    el.append(h("span", { class: "rtw-meta" }, approval.answer ? "approved" : "denied"));
    return el;
  }
  const answer = (approve) => () => {
    el.dispatchEvent(new CustomEvent("rtw-mcp-approval", { bubbles: true,
      detail: { request_id: approval.request_id, approve } }));
    for (const b of el.querySelectorAll("button")) b.disabled = true;
    el.append(h("span", { class: "rtw-meta" }, approve ? "approved" : "denied"));
  };
  el.append(h("button", { class: "rtw-approve", onclick: answer(true) }, "Approve"),
            h("button", { class: "rtw-deny", onclick: answer(false) }, "Deny"));
  return el;
}

/** A row's element, built from its data (the kernel's ``rows`` message). */
function rowElement(row) {
  const el = h("div", { class: `rtw-row rtw-${row.role || "system"} rtw-${row.kind}` });
  el.dataset.id = row.id;
  if (row.kind === "function_call" || row.kind === "function_call_output") {
    const head = row.kind === "function_call" ? `ƒ ${row.name}(${row.arguments || ""})` :
      `→ ${row.name || "tool"}`;
    el.append(h("div", { class: "rtw-tool-head" }, head));
    if (row.tool) el.append(toolState(row.tool));
    if (row.kind === "function_call_output") {
      el.append(h("div", { class: row.error ? "rtw-tool-error" : "rtw-tool-output" },
                  row.error || row.output || ""));
    }
  } else if (row.approval) {
    el.append(approvalElement(row.approval));
  } else {
    const who = row.role === "user" ? "you" : row.role === "assistant" ? "agent" : row.role;
    if (row.image) el.append(imageElement(row.image));
    // words only: "…" while they are on their way, never a stand-in for them
    el.append(h("span", { class: "rtw-who" }, who), h("span", { class: "rtw-text" },
      row.text || (row.pending || row.status === "in_progress" ? "…" : "")));
    // a diarised turn with several speakers: who said what, under the words
    if (row.speakers) {
      el.append(h("div", { class: "rtw-speakers" }, ...row.speakers.map((s) =>
        h("div", { class: "rtw-speaker-line" }, h("span", { class: "rtw-speaker" },
          `${s.speaker}:`), ` ${s.text}`))));
    }
    if (row.role === "user" && row.seconds) {
      el.append(h("span", { class: "rtw-meta", title: "how long you spoke" },
        `${row.seconds.toFixed(1)} s`));
    }
    if (row.error) el.append(h("span", { class: "rtw-meta rtw-row-error" }, row.error));
    if (row.latency != null) {
      el.append(h("span", { class: "rtw-latency", title: "from the end of your turn to this " +
        "reply playing (chat.df and rt.plot_latency show each stage)" },
        `latency ${row.latency.toFixed(2)} s`));
    }
  }
  if (row.status === "incomplete" || row.cut) {
    el.classList.add("rtw-cut");
    el.title = row.cut ? "cut off where you interrupted: what you heard" : "cut off";
  }
  return el;
}

const THUMBNAIL_SRC = /^data:image\/(png|jpeg);base64,[A-Za-z0-9+/=]+$/;

/** An image the user sent: its thumbnail (a small data URL made by the kernel) and what it is
 * ("png 640x480, 23 kB"); only the label when there is no thumbnail. */
function imageElement(image) {
  const box = h("div", { class: "rtw-image" });
  const label = String(image.label || "image");
  if (typeof image.src === "string" && THUMBNAIL_SRC.test(image.src)) {
    box.append(h("img", { src: image.src, alt: label, title: label }));
  }
  box.append(h("span", { class: "rtw-meta" }, label));
  return box;
}

/** Make ``el`` look like ``fresh`` (a row just built from newer data), touching only the
 * parts that differ: a streaming reply changes one text node, not the whole row. */
function patchRow(el, fresh) {
  if (el.className !== fresh.className) el.className = fresh.className;
  if (el.title !== fresh.title) el.title = fresh.title;
  const now = [...el.childNodes];
  const next = [...fresh.childNodes];
  if (now.length !== next.length) {
    el.replaceChildren(...next);
    return;
  }
  now.forEach((node, i) => {
    const want = next[i];
    if (node.isEqualNode(want)) return;
    const sameShell = node.nodeType === 1 && node.tagName === want.tagName &&
      node.className === want.className && node.title === want.title &&
      node.childElementCount === 0 && want.childElementCount === 0;
    if (sameShell) node.textContent = want.textContent;
    else node.replaceWith(want);
  });
}

const MAX_ROWS = 200; // transcript rows kept in the page; older ones are collapsed

/** The transcript's rows: rebuilds only rows whose data changed, keeps at most ``MAX_ROWS``
 * (more on request) and orders them by position only when the set of rows changed. */
export function transcriptRows(container) {
  const known = new Map(); // id -> the row object last drawn
  const shown = new Map(); // id -> its element, for rows in the page
  let limit = MAX_ROWS;
  let changed = [];
  let layout = true;
  const more = h("button", { type: "button", class: "rtw-more" });
  more.addEventListener("click", () => {
    limit += MAX_ROWS;
    layout = true;
    const before = container.scrollHeight;
    draw(false);
    container.scrollTop += container.scrollHeight - before; // keep the rows in view still
  });

  /** Take the engine's rows; true if anything needs drawing. */
  function sync(rows) {
    for (const [id, row] of rows) {
      const prev = known.get(id);
      if (prev === row) continue;
      if (!prev || prev.pos !== row.pos) layout = true;
      known.set(id, row);
      changed.push(row);
    }
    if (layout || known.size !== rows.size) {
      for (const id of [...known.keys()]) if (!rows.has(id)) known.delete(id);
      layout = true;
    }
    return layout || changed.length > 0;
  }

  function draw(stickToBottom) {
    for (const row of changed) {
      const el = shown.get(row.id);
      if (el) patchRow(el, rowElement(row));
    }
    changed = [];
    if (layout) place();
    layout = false;
    if (stickToBottom) container.scrollTop = container.scrollHeight;
  }

  function place() {
    const order = [...known.values()].sort((a, b) => a.pos - b.pos);
    const visible = order.slice(-limit);
    const keep = new Set(visible.map((r) => r.id));
    for (const [id, el] of shown) {
      if (!keep.has(id)) {
        el.remove();
        shown.delete(id);
      }
    }
    const hidden = order.length - visible.length;
    if (hidden > 0) {
      more.textContent = `Show ${Math.min(hidden, MAX_ROWS)} earlier messages (${hidden} hidden)`;
      if (container.firstChild !== more) container.prepend(more);
    } else if (more.parentNode) {
      more.remove();
    }
    const offset = hidden > 0 ? 1 : 0;
    visible.forEach((row, i) => {
      let el = shown.get(row.id);
      if (!el) {
        el = rowElement(row);
        shown.set(row.id, el);
      }
      const at = container.children[i + offset];
      if (at !== el) container.insertBefore(el, at || null);
    });
  }

  return { sync, draw };
}
