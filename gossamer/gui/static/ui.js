// Building blocks of every page: elements built from data (never HTML strings, so
// nothing a resource holds can become markup), status badges, empty states, and the
// filterable, paginated table each list uses.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Status colours: ok (green), warn (amber), bad (red), idle (grey).
export function badge(text, tone) {
  return h("span", { class: `badge ${tone}`, "data-status": text }, text);
}

export function emptyState(title, hint, command) {
  return h("div", { class: "empty" }, h("strong", {}, title), h("p", {}, hint),
    command ? h("pre", { class: "cmd" }, command) : null);
}

export function errorBox(message) {
  return h("div", { class: "error", role: "alert" }, message);
}

export function link(href, text) {
  return h("a", { href }, text);
}

export function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (Number.isNaN(seconds)) return iso;
  if (seconds < 60) return `${Math.max(seconds, 0)}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

export function until(seconds) {
  if (seconds === null || seconds === undefined) return "unknown";
  if (seconds <= 0) return "expired";
  if (seconds < 3600) return `in ${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `in ${Math.round(seconds / 3600)}h`;
  return `in ${Math.round(seconds / 86400)}d`;
}

export const PAGE = 20;

// A table over `rows` with a text filter (and optional select filters) and pages of 20.
// `state` survives re-renders (each poll), so typing and paging are never reset.
// columns: [{title, cell: row => node|string, text?: row => string}]
export function table(state, rows, columns, options = {}) {
  state.filter ??= "";
  state.page ??= 0;
  state.selects ??= {};
  const selects = (options.selects || []).map(({ key, label, values }) =>
    h("select", {
      "aria-label": label, "data-filter": key,
      onchange: (e) => { state.selects[key] = e.target.value; state.page = 0; options.rerender(); },
    }, h("option", { value: "" }, `All ${label}`),
    values.map((v) => h("option", { value: v, selected: state.selects[key] === v }, v))));
  // options.total: the server filtered and paged already; `rows` is this page of `total`.
  const server = options.total !== undefined;
  const text = (row) => columns.map((c) => (c.text ? c.text(row) : "")).join(" ").toLowerCase();
  const wanted = server ? rows : rows.filter((row) => text(row).includes(state.filter.toLowerCase()) &&
    (options.selects || []).every(({ key, of }) => !state.selects[key] || of(row) === state.selects[key]));
  const count = server ? options.total : wanted.length;
  const pages = Math.max(1, Math.ceil(count / PAGE));
  state.page = Math.min(state.page, pages - 1);
  const shown = server ? rows : wanted.slice(state.page * PAGE, (state.page + 1) * PAGE);
  const input = h("input", {
    type: "search", placeholder: options.placeholder || "Filter", value: state.filter,
    "aria-label": "Filter",
    oninput: (e) => { state.filter = e.target.value; state.page = 0; options.rerender(true); },
  });
  const body = shown.length
    ? h("tbody", {}, shown.map((row) => h("tr", {}, columns.map((c) => h("td", {}, c.cell(row))))))
    : h("tbody", {}, h("tr", {}, h("td", { colspan: columns.length, class: "none" },
      rows.length || server ? "Nothing matches the filter." : options.empty || "Nothing yet.")));
  const pager = h("div", { class: "pager" },
    h("span", {}, server ? `${count} found` : `${wanted.length} of ${rows.length}`),
    h("button", { disabled: state.page === 0, onclick: () => { state.page--; options.rerender(); } }, "‹ Prev"),
    h("span", { class: "pageno" }, `Page ${state.page + 1} / ${pages}`),
    h("button", { disabled: state.page >= pages - 1, onclick: () => { state.page++; options.rerender(); } }, "Next ›"));
  return h("div", { class: "listing" },
    h("div", { class: "toolbar" }, input, selects),
    h("table", {}, h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c.title)))), body),
    pager);
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function pairs(items) {
  return h("dl", { class: "pairs" }, items.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}
