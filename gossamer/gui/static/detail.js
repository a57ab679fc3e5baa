// The detail pages: one dataplane (overview, matched policies, traffic routes, live Envoy
// config), one policy (YAML and the dataplanes it selects), one service (who may call it).

import { ApiError, get } from "./api.js";
import { DISPLAY_NAME, dataplaneStatus, isGlobal, reportedXds, targetText, zoneReports } from "./pages.js";
import { outboundRoutes } from "./routes.js";
import { badge, emptyState, errorBox, h, link, pairs, section, table, until } from "./ui.js";
import { toYaml } from "./yaml.js";

const enc = encodeURIComponent;
const TABS = ["Policies", "Routes", "Envoy config", "YAML"];

function envoyPage(ctx, mesh, name, zone, page) {
  return get(`/meshes/${enc(mesh)}/dataplanes/${enc(name)}/_envoy/${page}`, isGlobal(ctx) ? { zone } : {});
}

function policiesTab(matched) {
  if (!matched.kinds.length) {
    return emptyState("No policy applies to this dataplane",
      "Its inbounds deny every caller until a MeshTrafficPermission allows them.", null);
  }
  return h("div", {}, matched.kinds.map((k) => h("div", { class: "kind", "data-kind": k.kind },
    h("h3", {}, k.kind),
    h("table", {}, h("thead", {}, h("tr", {}, ["Where", "Merged conf", "Made by (last wins)"].map((t) => h("th", {}, t)))),
      h("tbody", {}, k.entries.map((e) => h("tr", {},
        h("td", {}, e.target),
        h("td", {}, h("pre", { class: "conf" }, toYaml(e.conf)), e.problem ? errorBox(e.problem) : null),
        h("td", {}, e.policies.join(" → ")))))))));
}

function endpointItem(e, ownZone) {
  return h("li", {}, "→ ", h("code", {}, e.address), " ",
    h("span", { class: "chip zone", "data-zone": e.zone }, `zone ${e.zone || "?"}`), " ",
    e.zone === ownZone ? badge("local", "ok") : badge("remote zone", "idle"),
    h("span", { class: "muted" }, ` priority ${e.priority}`),
    e.health && e.health !== "healthy" ? badge(e.health, "warn") : null);
}

function clusterHop(c, ownZone) {
  return h("div", { class: "hop cluster" }, "→ ", h("span", { class: "label" }, "cluster"), h("code", {}, c.name),
    c.endpoints.length
      ? h("ul", { class: "endpoints" }, c.endpoints.map((e) => endpointItem(e, ownZone)))
      : h("span", { class: "muted" }, " no endpoints"));
}

function routesTab(rows, ownZone) {
  if (!rows.length) {
    return emptyState("No outbound yet", "Outbounds appear once a service this sidecar may call runs in the mesh.", null);
  }
  return h("div", { class: "routes" }, rows.map((r) => h("div", { class: "route" },
    h("div", { class: "hop" }, h("span", { class: "label" }, "outbound"), h("code", {}, r.listener), " ",
      h("span", { class: "muted" }, r.address)),
    r.clusters.map((c) => clusterHop(c, ownZone)))));
}

async function activeTab(ctx, state, mesh, name, zone, doc) {
  try {
    if (state.tab === "Policies") {
      return policiesTab(await get(`/meshes/${enc(mesh)}/dataplanes/${enc(name)}/_policies`, isGlobal(ctx) ? { zone } : {}));
    }
    if (state.tab === "YAML") return h("pre", { class: "yaml" }, toYaml(doc));
    const dump = await envoyPage(ctx, mesh, name, zone, "config_dump");
    if (state.tab === "Envoy config") {
      let pretty = dump.body;
      try { pretty = JSON.stringify(JSON.parse(dump.body), null, 2); } catch { /* shown as sent */ }
      return h("div", {}, dump.note ? h("p", { class: "muted" }, dump.note) : null, h("pre", { class: "envoy" }, pretty));
    }
    const clusters = await envoyPage(ctx, mesh, name, zone, "clusters");
    return routesTab(outboundRoutes(dump.body, clusters.body), zone || ctx.info.zone);
  } catch (e) {
    if (e instanceof ApiError) return errorBox(e.message);
    throw e;
  }
}

// At the global the sidecar's certificate comes from its Envoy (/certs, relayed by its
// zone): the identity certificate it serves with, as Envoy holds it now.
async function liveCertificate(ctx, mesh, name, zone) {
  try {
    const page = await envoyPage(ctx, mesh, name, zone, "certs");
    const chain = JSON.parse(page.body).certificates.flatMap((c) => c.cert_chain || []);
    const own = chain.find((c) => (c.subject_alt_names || []).some((s) => (s.uri || "").startsWith("spiffe://")));
    if (!own) return null;
    const seconds = Math.round((Date.parse(own.expiration_time) - Date.now()) / 1000);
    return { health: seconds > 0 ? "valid" : "expired", expiresInSeconds: seconds, serial: own.serial_number || "" };
  } catch {
    return null; // the zone or the sidecar is not reachable now: shown as unknown
  }
}

export async function dataplanePage(ctx, mesh, name, zone) {
  const state = (ctx.state[`dp:${mesh}/${name}`] ??= { tab: "Policies" });
  let row;
  if (isGlobal(ctx)) {
    const found = await get(`/meshes/${enc(mesh)}/dataplanes`, { labels: `${DISPLAY_NAME}=${name},gossamer.io/zone=${zone}` });
    if (!found.items.length) return h("div", {}, link("#/dataplanes", "‹ Dataplanes"), errorBox(`No dataplane ${name} in zone ${zone || "?"} of mesh ${mesh}.`));
    const zones = (await get("/zones/_overviews")).items;
    const status = (zones.find((z) => z.name === zone) || { insight: { status: "Offline" } }).insight.status;
    const { nacks } = await zoneReports();
    row = { mesh, name, dataplane: found.items[0], zone, zoneStatus: status,
      certificate: await liveCertificate(ctx, mesh, name, zone),
      xds: reportedXds(nacks, `${zone}/${mesh}/${name}`) };
  } else {
    row = await get(`/meshes/${enc(mesh)}/dataplanes/${enc(name)}/_overview`);
  }
  const cert = row.certificate;
  const tabs = h("div", { class: "tabs", role: "tablist" }, TABS.map((t) => h("button", {
    role: "tab", "aria-selected": String(state.tab === t), class: state.tab === t ? "active" : "",
    onclick: () => { state.tab = t; ctx.rerender(); },
  }, t)));
  const inbound = (row.dataplane.networking || {}).inbound || [];
  return h("div", {},
    h("p", {}, link("#/dataplanes", "‹ Dataplanes")),
    section(`Dataplane ${name}`, pairs([
      ["Mesh", mesh], ["Zone", zone || ctx.info.zone || "—"],
      ["Status", isGlobal(ctx)
        ? h("span", {}, dataplaneStatus(ctx, row), h("span", { class: "muted" }, " its Envoy's live pages below are relayed by its zone"))
        : dataplaneStatus(ctx, row)],
      ["Address", (row.dataplane.networking || {}).address || "—"],
      ["Inbounds", inbound.map((i) => `:${i.port} → ${i.servicePort || i.port} (${(i.tags || {})["gossamer.io/service"]})`).join(", ") || "none"],
      ["Certificate", cert ? h("span", {}, badge(cert.health, cert.health === "valid" ? "ok" : "warn"), ` expires ${until(cert.expiresInSeconds)} · serial ${cert.serial.slice(0, 16)}`) : "—"],
      ["ACK / NACK", !row.xds ? "—" : row.xds.reported
        ? (row.xds.lastNack ? "NACKing, as its zone reported" : "no NACK, as its zone reported")
        : `${row.xds.acked} / ${row.xds.nacked}`],
      ["Last NACK", row.xds && row.xds.lastNack ? h("span", { class: "bad-text" }, row.xds.lastNack) : "none"],
    ])),
    h("section", { class: "card" }, tabs, await activeTab(ctx, state, mesh, name, zone, row.dataplane)));
}

export async function policyPage(ctx, mesh, kind, name) {
  const page = await get("/policies/_overviews", { mesh, kind, q: name });
  const found = page.items.find((p) => p.document.name === name);
  if (!found) return h("div", {}, link("#/policies", "‹ Policies"), errorBox(`${kind} ${name} is gone from mesh ${mesh}.`));
  const selected = found.dataplanes;
  return h("div", {}, h("p", {}, link("#/policies", "‹ Policies")),
    section(`${kind} ${name}`, pairs([["Mesh", mesh], ["Target", targetText(found.document)]]),
      h("pre", { class: "yaml" }, toYaml(found.document))),
    section("Dataplanes it selects", selected.length
      ? h("ul", { class: "plain" }, selected.map((d) => h("li", {}, link(
        `#/dataplanes/${enc(mesh)}/${enc(d.name)}` + (isGlobal(ctx) ? `?zone=${enc(d.zone || "")}` : ""), d.name),
      h("span", { class: "muted" }, d.zone ? ` in ${d.zone}` : ""))))
      : h("p", { class: "muted" }, "Its targetRef selects no dataplane yet.")));
}

function actionTone(action) {
  return { Allow: "ok", Deny: "bad", AllowWithShadowDeny: "warn", Mixed: "warn" }[action] || "idle";
}

export async function servicePage(ctx, mesh, service) {
  const answer = await get(`/meshes/${enc(mesh)}/services/${enc(service)}/_callers`);
  const state = (ctx.state[`svc:${mesh}/${service}`] ??= {});
  return h("div", {}, h("p", {}, link("#/services", "‹ Services")),
    section(`Who may call ${service}`,
      h("p", { class: "muted" }, `MeshTrafficPermission result per caller service, as each of the ${answer.instances} instance(s) of ${service} known here applies it.`),
      table(state, answer.callers, [
        { title: "Caller", cell: (c) => h("strong", {}, c.service), text: (c) => c.service },
        { title: "Result", cell: (c) => badge(c.action, actionTone(c.action)), text: (c) => c.action },
        { title: "Decided by", cell: (c) => c.policies.join(", ") || h("span", { class: "muted" }, c.reason || "—") },
        { title: "Per instance", cell: (c) => c.instances.map((i) => h("span", { class: "chip" }, `${i.dataplane}: ${i.action}`)) },
      ], { rerender: ctx.rerender, placeholder: "Filter callers", empty: "No service runs in this mesh yet." })));
}
