// The few DOM helpers the page needs. Text is always set as text (never as
// HTML), so a file name can never become markup.

export function byId(id) {
  return document.getElementById(id);
}

export function show(node, visible) {
  node.hidden = !visible;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

/** An element with attributes (booleans set or leave out the attribute) and children (nodes or text). */
export function el(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === true) node.setAttribute(name, '');
    else if (value !== false && value != null) node.setAttribute(name, String(value));
  }
  if (tag === 'progress' && 'value' in attributes) node.value = attributes.value;
  if (tag === 'option' && attributes.selected) node.selected = true;
  for (const child of [].concat(children)) node.append(child);
  return node;
}

/** A file path as text that may wrap after each `/` (long CD paths on a phone). */
export function pathText(path) {
  const span = document.createElement('span');
  path.split('/').forEach((part, n, parts) => {
    span.append(n < parts.length - 1 ? `${part}/` : part);
    if (n < parts.length - 1) span.append(document.createElement('wbr'));
  });
  return span;
}
