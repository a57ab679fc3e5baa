// The GUI's shell: sign-in, the hash router, and polling. Every POLL_MS the current page
// is fetched and drawn again, so what the control plane knows shows up without a reload;
// each page keeps its filter, page and tab in ctx.state across redraws.

import { SignedOut, info, signIn, signOut } from "./api.js";
import { dataplanePage, policyPage, servicePage } from "./detail.js";
import { dataplanesPage, meshesPage, policiesPage, servicesPage, zonesPage } from "./pages.js";
import { errorBox, h } from "./ui.js";

const POLL_MS = 2500;
const NAV = [["zones", "Zones"], ["meshes", "Meshes"], ["services", "Services"], ["dataplanes", "Dataplanes"], ["policies", "Policies"]];

const ctx = { info: null, state: {}, rerender: (focus) => draw(focus) };
let drawing = null;
let signedIn = true;

function route() {
  const [path, query] = (location.hash.replace(/^#\/?/, "") || "zones").split("?");
  const parts = path.split("/").map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  if (parts[0] === "dataplanes" && parts.length === 3) return ["dataplanes", () => dataplanePage(ctx, parts[1], parts[2], params.get("zone") || "")];
  if (parts[0] === "policies" && parts.length === 4) return ["policies", () => policyPage(ctx, parts[1], parts[2], parts[3])];
  if (parts[0] === "services" && parts.length === 3) return ["services", () => servicePage(ctx, parts[1], parts[2])];
  const pages = { zones: zonesPage, meshes: meshesPage, services: servicesPage, dataplanes: dataplanesPage, policies: policiesPage };
  const page = pages[parts[0]] || zonesPage;
  return [pages[parts[0]] ? parts[0] : "zones", () => page(ctx)];
}

function header(active) {
  const where = ctx.info.mode === "global" ? "Global" : `Zone ${ctx.info.zone}`;
  return h("header", {},
    h("div", { class: "brand" }, h("span", { class: "logo" }, "◈"), " Gossamer",
      h("span", { class: "where" }, where), h("span", { class: "version" }, `v${ctx.info.version}`)),
    h("nav", {}, NAV.map(([id, title]) => h("a", { href: `#/${id}`, class: id === active ? "active" : "" }, title))),
    h("div", { class: "right" }, h("span", { class: "live", id: "live" }, "● live"),
      h("button", { class: "ghost", id: "signout", onclick: async () => { await signOut(); signedIn = false; showSignIn(); } }, "Sign out")));
}

function showSignIn(message) {
  const input = h("input", { type: "password", id: "token", autocomplete: "current-password", placeholder: "admin token", required: true });
  const form = h("form", { class: "signin card", onsubmit: async (e) => {
    e.preventDefault();
    const problem = await signIn(input.value);
    if (problem) { showSignIn(problem); return; }
    signedIn = true;
    draw();
  } },
  h("h1", {}, h("span", { class: "logo" }, "◈"), " Gossamer"),
  h("p", {}, `Sign in to the ${ctx.info.mode === "global" ? "global control plane" : `control plane of zone ${ctx.info.zone}`} with its admin token.`),
  h("p", { class: "muted" }, "It is in the file admin-token of the control plane's data directory."),
  input, message ? h("p", { class: "error", role: "alert" }, message) : null,
  h("button", { type: "submit" }, "Sign in"));
  document.getElementById("app").replaceChildren(form);
  input.focus();
}

async function draw(focusFilter = false) {
  if (drawing) return drawing;
  drawing = (async () => {
    const [active, page] = route();
    let body;
    try {
      body = await page();
    } catch (e) {
      if (e instanceof SignedOut) { signedIn = false; showSignIn(); return; }
      body = errorBox(`Could not load this page: ${e.message}`);
    }
    const main = h("main", { "data-page": active }, body);
    document.getElementById("app").replaceChildren(header(active), main);
    document.body.dataset.updated = String(Date.now());
    if (focusFilter) {
      const filter = main.querySelector("input[type=search]");
      if (filter) { filter.focus(); filter.setSelectionRange(filter.value.length, filter.value.length); }
    }
  })();
  try { await drawing; } finally { drawing = null; }
}

async function start() {
  ctx.info = await info();
  document.title = `Gossamer · ${ctx.info.mode === "global" ? "global" : ctx.info.zone}`;
  window.addEventListener("hashchange", () => draw());
  await draw();
  // A redraw keeps a focused filter focused; an open drop-down is left alone until closed.
  setInterval(() => {
    const focused = document.activeElement;
    if (signedIn && !document.hidden && !focused?.matches("select")) draw(Boolean(focused?.matches("input[type=search]")));
  }, POLL_MS);
}

start();
