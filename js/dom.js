// Small DOM helpers shared by the widget's views.

/** An element: `attrs` are attributes (`class`, and `on<event>` listeners), then children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null) el.append(c);
  return el;
}

/** Set an element's text only when it differs (setting it always costs a relayout). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** Set data-* attributes that changed, leaving the others untouched. */
export function setData(el, values) {
  for (const [k, v] of Object.entries(values)) {
    const text = String(v);
    if (el.dataset[k] !== text) el.dataset[k] = text;
  }
}
