// Building the page without HTML strings: every piece of data becomes a
// text node, so a case title like <img src=x onerror=...> shows as text.
// Nothing here ever assigns innerHTML or sets a style attribute.

// h('a', {href: '#/cases/1', class: 'x'}, 'text', child...): an element.
// Props: class, text, on<event> (a listener), dataset (object); anything
// else is an attribute (true -> present, null/false -> left out).
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k.startsWith('on') || k === 'style') throw new Error(`h: no ${k} attribute (the CSP forbids it)`);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

// append(el, child, [children], ...): adds them in order; strings become text.
export function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces el's children with these.
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// A link only to http(s): a configured Grafana URL, never javascript: or data:.
export function safeHttpUrl(text) {
  try {
    const u = new URL(text, location.href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

// <select> from [[value, label], ...], with `selected` chosen.
export function select(props, options, selected) {
  const s = h('select', props);
  for (const [value, label] of options) {
    const o = h('option', { value }, label);
    if (String(value) === String(selected ?? '')) o.selected = true;
    s.append(o);
  }
  return s;
}

// A labelled field: <label><span>text</span>control</label>.
export function field(label, control, extraClass) {
  return h('label', { class: 'field' + (extraClass ? ' ' + extraClass : '') }, h('span', { class: 'field-label' }, label), control);
}
