// The list pages: Zones, Meshes, Services, Dataplanes, Policies. Each is
// `async (ctx) => Node`, called again on every poll; ctx.state keeps its filter and page.
// At the global they show every zone; at a zone CP, that zone's own.

import { get, getOr } from "./api.js";
import { PAGE, ago, badge, emptyState, h, link, section, table, until } from "./ui.js";

const ZONE_LABEL = "gossamer.io/zone";
const SERVICE_TAG = "gossamer.io/service";
// The global stores a zone's Dataplane under a zone-hashed name; this label has its own.
export const DISPLAY_NAME = "gossamer.io/display-name";

export const isGlobal = (ctx) => ctx.info.mode === "global";
const items = (page) => (page && page.items) || [];
const uniq = (values) => [...new Set(values.filter(Boolean))].sort();

function statusTone(status) {
  return { Online: "ok", Offline: "bad", valid: "ok", expiring: "warn", expired: "bad" }[status] || "idle";
}

function ingressCell(zi) {
  const net = zi.networking || {};
  const advertised = net.advertisedAddress ? `${net.advertisedAddress}:${net.advertisedPort || net.port}` : `${net.address}:${net.port}`;
  const services = uniq((zi.availableServices || []).map((a) => (a.tags || {})[SERVICE_TAG]));
  return h("div", { class: "ingress" }, h("code", {}, advertised), " ",
    h("span", { class: "muted" }, services.length ? services.join(", ") : "no services yet"));
}

function egressCell(ze) {
  const net = ze.networking || {};
  const dialled = `${net.advertisedAddress || net.address}:${net.advertisedPort || net.port}`;
  return h("div", { class: "egress" }, h("code", {}, dialled), " ",
    h("span", { class: "muted" }, "meshes " + (ze.meshes || []).join(", ")));
}

export async function zonesPage(ctx) {
  const ingresses = items(await get("/zone-ingresses"));
  const egresses = items(await getOr("/zone-egresses", { items: [] }));
  const ownerOf = (zi) => (zi.labels || {})[ZONE_LABEL] || zi.zone || ctx.info.zone || "";
  if (!isGlobal(ctx)) {
    const own = ingresses.filter((zi) => ownerOf(zi) === ctx.info.zone);
    const others = ingresses.filter((zi) => ownerOf(zi) !== ctx.info.zone);
    return h("div", {}, section(`Zone ${ctx.info.zone}`,
      h("p", {}, badge(ctx.info.mode === "zone" ? "Federated" : "Standalone", "ok"),
        ` control plane ${ctx.info.version}. Open the global's GUI to see every zone.`),
      h("h3", {}, "Ingresses of this zone"),
      own.length ? own.map(ingressCell) : emptyState("No ingress in this zone",
        "Other zones reach this zone's services through its ingress. Start one:",
        "gossamer token zone --zone " + ctx.info.zone + " --scope ingress > ingress.token\n" +
        "gossamer ingress run --cp https://ZONE_CP:5678 --token-file ingress.token"),
      h("h3", {}, "Egresses of this zone"),
      egresses.length ? egresses.map(egressCell) : emptyState("No egress in this zone",
        "With routing.zoneEgress on the Mesh, external services are reached through it. Start one:",
        "gossamer token zone --zone " + ctx.info.zone + " --scope egress > egress.token\n" +
        "gossamer egress run --cp https://ZONE_CP:5678 --token-file egress.token")),
    section("Other zones' ingresses", others.length
      ? others.map((zi) => h("div", {}, h("strong", {}, ownerOf(zi)), " ", ingressCell(zi)))
      : h("p", { class: "muted" }, "None synced from the global.")));
  }
  const zones = items(await get("/zones/_overviews"));
  const healths = Object.fromEntries(items(await getOr("/zone-healths", { items: [] }))
    .map((doc) => [doc.spec.zone, doc.spec]));
  if (!zones.length) {
    return emptyState("No zone has connected yet",
      "Issue a zone token, then start a zone control plane pointed at this global:",
      "gossamer token zone --zone east > east.token\n" +
      "gossamer zone run --zone east --global grpcs://GLOBAL:5685 --token-file east.token --global-ca ca.pem");
  }
  const state = (ctx.state.zones ??= {});
  return section("Zones", table(state, zones, [
    { title: "Zone", cell: (z) => h("strong", {}, z.name), text: (z) => z.name },
    { title: "Status", cell: (z) => badge(z.insight.status, statusTone(z.insight.status)), text: (z) => z.insight.status },
    { title: "CP version", cell: (z) => z.insight.version || "—" },
    { title: "Last sync", cell: (z) => ago(z.insight.lastUpdate) },
    { title: "Sent / ACKed / NACKed", cell: (z) => {
      const t = z.insight.totals;
      return h("span", {}, `${t.sent} / ${t.acked} / `, h("span", { class: t.nacked ? "bad-text" : "" }, String(t.nacked)));
    } },
    { title: "Dataplanes online", cell: (z) => (healths[z.name] ? `${healths[z.name].online} / ${healths[z.name].dataplanes}` : "—") },
    { title: "Zone token expires", cell: (z) => {
      const at = healths[z.name] && healths[z.name].tokenExpiresAt;
      return at ? until(at - Date.now() / 1000) : "unknown";
    } },
    { title: "Ingresses", cell: (z) => {
      const own = ingresses.filter((zi) => ownerOf(zi) === z.name);
      return own.length ? own.map(ingressCell) : h("span", { class: "muted" }, "none");
    } },
    { title: "Egresses", cell: (z) => {
      const own = egresses.filter((ze) => ownerOf(ze) === z.name);
      return own.length ? own.map(egressCell) : h("span", { class: "muted" }, "none");
    } },
  ], { rerender: ctx.rerender, placeholder: "Filter zones", selects: [
    { key: "status", label: "statuses", values: ["Online", "Offline"], of: (z) => z.insight.status }] }));
}

function rootsCell(trust) {
  if (!trust) return h("span", { class: "muted" }, "not yet issued");
  return h("ul", { class: "plain" }, trust.roots.map((r) =>
    h("li", {}, h("code", { title: r.fingerprint }, r.fingerprint.slice(0, 12)), ` ${r.backend || "?"} · expires ${r.notAfter.slice(0, 10)}`)));
}

export async function meshesPage(ctx) {
  const overviews = await getOr("/meshes/_overviews", null);
  const state = (ctx.state.meshes ??= {});
  if (overviews === null) { // a federated zone: the global owns the roots
    const meshes = items(await get("/meshes"));
    return section("Meshes", h("p", { class: "muted" }, "The global owns these meshes' roots; its GUI shows their CA rotation."),
      table(state, meshes, [
        { title: "Mesh", cell: (m) => h("strong", {}, m.name), text: (m) => m.name },
        { title: "mTLS backend", cell: (m) => ((m.mtls || {}).enabledBackend || "—") },
      ], { rerender: ctx.rerender, empty: "No mesh synced yet." }));
  }
  const meshes = items(overviews);
  if (!meshes.length) return emptyState("No mesh yet", "Create one:", "gossamer apply -f - <<EOF\ntype: Mesh\nname: default\nEOF");
  return section("Meshes", table(state, meshes, [
    { title: "Mesh", cell: (m) => h("strong", {}, m.name), text: (m) => m.name },
    { title: "mTLS backend", cell: (m) => `${m.mtls.enabledBackend} (${m.mtls.type}, ${m.mtls.mode})` },
    { title: "CA rotation", cell: (m) => (m.trust ? badge(m.trust.phase, m.trust.phase === "stable" ? "ok" : "warn") : badge("pending", "idle")) },
    { title: "Roots", cell: (m) => rootsCell(m.trust) },
    { title: "Certificates on old roots", cell: (m) => h("span", { class: m.certificatesOnOldRoots ? "warn-text" : "" }, String(m.certificatesOnOldRoots)) },
    { title: "Message", cell: (m) => (m.trust && m.trust.message) || "" },
  ], { rerender: ctx.rerender, placeholder: "Filter meshes" }));
}

// What each zone last reported of its sidecars' problems (ZoneHealth): NACKs and
// certificates past their renewal point, by zone/mesh/name.
export async function zoneReports() {
  const reports = items(await getOr("/zone-healths", { items: [] }));
  const problems = (list) => new Map(reports.flatMap((d) => (d.spec[list] || [])
    .map((p) => [`${d.spec.zone}/${p.mesh}/${p.name}`, p.detail || p.hint || list])));
  return { nacks: problems("nacking"), certs: problems("certificates") };
}

// At the global a sidecar's xDS state is what its zone reported: NACKing (and why) or not.
export function reportedXds(nacks, key) {
  return { acked: "?", nacked: nacks.has(key) ? "≥1" : "0", lastNack: nacks.get(key) || "",
    reported: true };
}

async function dataplaneRows(ctx) {
  if (!isGlobal(ctx)) return items(await get("/dataplanes/_overviews"));
  const zones = Object.fromEntries(items(await get("/zones/_overviews")).map((z) => [z.name, z.insight.status]));
  const { nacks, certs } = await zoneReports();
  return items(await get("/dataplanes")).map((doc) => {
    const zone = (doc.labels || {})[ZONE_LABEL] || "";
    const name = (doc.labels || {})[DISPLAY_NAME] || doc.name;
    const key = `${zone}/${doc.mesh}/${name}`;
    return { mesh: doc.mesh, name, dataplane: doc, zone, zoneStatus: zones[zone] || "Offline",
      nacking: nacks.has(key), xds: nacks.has(key) ? reportedXds(nacks, key) : null,
      certProblem: certs.get(key) };
  });
}

const servicesOf = (dp) => uniq(((dp.dataplane || {}).networking || {}).inbound?.map((i) => (i.tags || {})[SERVICE_TAG]) || []);

export async function servicesPage(ctx) {
  const rows = items(await get("/services/_overviews"));
  const dps = await dataplaneRows(ctx);
  const vips = isGlobal(ctx) ? [] : items(await getOr("/virtual-ips", { items: [] }));
  const grouped = {};
  for (const r of rows) {
    const g = (grouped[`${r.mesh}/${r.service}`] ??= { mesh: r.mesh, service: r.service, zones: [], instances: 0, protocol: r.protocol });
    g.zones.push(r);
    g.instances += r.instances;
  }
  const local = (g) => dps.filter((d) => d.mesh === g.mesh && servicesOf(d).includes(g.service));
  const ports = (g) => uniq(local(g).flatMap((d) => d.dataplane.networking.inbound
    .filter((i) => (i.tags || {})[SERVICE_TAG] === g.service).map((i) => String(i.servicePort || i.port))));
  const vip = (g) => vips.filter((v) => v.mesh === g.mesh && ((v.labels || {})[SERVICE_TAG] || v.name) === g.service).map((v) => v.ip).join(", ");
  const list = Object.values(grouped);
  if (!list.length) return emptyState("No service yet", "Services appear when sidecars register. Start one next to your app:", "gossamer proxy run --dataplane dataplane.yaml --cp https://ZONE_CP:5678 --token-file dp.token");
  const state = (ctx.state.services ??= {});
  return section("Services", table(state, list, [
    { title: "Service", cell: (g) => link(`#/services/${encodeURIComponent(g.mesh)}/${encodeURIComponent(g.service)}`, g.service), text: (g) => `${g.service} ${g.mesh}` },
    { title: "Mesh", cell: (g) => g.mesh },
    { title: "Served by zones", cell: (g) => g.zones.map((z) => h("span", { class: "chip", title: `via ${z.via}` }, `${z.zone || "this zone"} (${z.instances})`)), text: (g) => g.zones.map((z) => z.zone).join(" ") },
    { title: "Instances online / total", cell: (g) => {
      if (isGlobal(ctx)) return `${g.instances} total`;
      const mine = local(g);
      const online = mine.filter((d) => d.online).length;
      return badge(`${online} / ${mine.length || g.instances}`, mine.length && online === mine.length ? "ok" : online ? "warn" : "bad");
    } },
    { title: "VIP", cell: (g) => vip(g) || h("span", { class: "muted" }, isGlobal(ctx) ? "per zone" : "—") },
    { title: "Ports", cell: (g) => ports(g).join(", ") || "—" },
    { title: "Protocol", cell: (g) => g.protocol },
    { title: "", cell: (g) => link(`#/services/${encodeURIComponent(g.mesh)}/${encodeURIComponent(g.service)}`, "Who may call") },
  ], { rerender: ctx.rerender, placeholder: "Filter services", selects: [
    { key: "mesh", label: "meshes", values: uniq(list.map((g) => g.mesh)), of: (g) => g.mesh }] }));
}

export function dataplaneStatus(ctx, d) {
  if (isGlobal(ctx)) {
    if (d.nacking) return badge("NACKing", "bad");
    return badge(d.zoneStatus === "Online" ? "Zone online" : "Zone offline", d.zoneStatus === "Online" ? "ok" : "bad");
  }
  if (!d.online) return badge("Offline", "bad");
  if (d.xds && d.xds.nacked && d.xds.lastNack) return badge("NACKing", "bad");
  return badge("Online", "ok");
}

export async function dataplanesPage(ctx) {
  const rows = await dataplaneRows(ctx);
  if (!rows.length) return emptyState("No dataplane yet", "Issue a dataplane token and start a sidecar next to your app:", "gossamer token dataplane --mesh default --service backend > dp.token\ngossamer proxy run --dataplane dataplane.yaml --cp https://ZONE_CP:5678 --token-file dp.token");
  const state = (ctx.state.dataplanes ??= {});
  const zoneOf = (d) => d.zone || ctx.info.zone || "";
  const href = (d) => `#/dataplanes/${encodeURIComponent(d.mesh)}/${encodeURIComponent(d.name)}` + (isGlobal(ctx) ? `?zone=${encodeURIComponent(zoneOf(d))}` : "");
  const statusText = (d) => dataplaneStatus(ctx, d).textContent;
  return section("Dataplanes", table(state, rows, [
    { title: "Name", cell: (d) => link(href(d), d.name), text: (d) => `${d.name} ${servicesOf(d).join(" ")}` },
    { title: "Mesh", cell: (d) => d.mesh },
    { title: "Zone", cell: (d) => zoneOf(d) },
    { title: "Services", cell: (d) => servicesOf(d).join(", ") },
    { title: "Status", cell: (d) => dataplaneStatus(ctx, d) },
    { title: "Certificate", cell: (d) => (d.certificate
      ? h("span", {}, badge(d.certificate.health, statusTone(d.certificate.health)), ` expires ${until(d.certificate.expiresInSeconds)}`)
      : d.certProblem ? h("span", {}, badge("expiring", "warn"), ` ${d.certProblem}`)
        : h("span", { class: "muted" }, isGlobal(ctx) ? "no problem reported by its zone" : "not reported")) },
    { title: "ACK / NACK", cell: (d) => (d.xds ? `${d.xds.acked} / ${d.xds.nacked}` : "—") },
    { title: "Last NACK", cell: (d) => (d.xds && d.xds.lastNack ? h("span", { class: "bad-text" }, d.xds.lastNack.slice(0, 160)) : "") },
  ], { rerender: ctx.rerender, placeholder: "Filter by name or service", selects: [
    { key: "mesh", label: "meshes", values: uniq(rows.map((d) => d.mesh)), of: (d) => d.mesh },
    { key: "zone", label: "zones", values: uniq(rows.map(zoneOf)), of: zoneOf },
    { key: "status", label: "statuses", values: uniq(rows.map(statusText)), of: statusText }] }));
}

export function targetText(doc) {
  const ref = (doc.spec || {}).targetRef || {};
  return ref.name ? `${ref.kind} ${ref.name}` : ref.kind || "—";
}

export async function policiesPage(ctx) {
  // Paged and filtered by the control plane: which dataplanes each policy selects is
  // worked out for the 20 policies shown, not for every policy on every poll.
  const state = (ctx.state.policies ??= { filter: "", page: 0, selects: {} });
  const page = await get("/policies/_overviews", { q: state.filter, kind: state.selects.kind,
    mesh: state.selects.mesh, size: PAGE, offset: state.page * PAGE });
  const rows = page.items;
  const filtered = state.filter || state.selects.kind || state.selects.mesh;
  if (!page.total && !filtered) return emptyState("No policy yet", "The mesh denies traffic until a MeshTrafficPermission allows it. Apply one:", "gossamer apply -f - <<EOF\ntype: MeshTrafficPermission\nname: allow-all\nmesh: default\nspec:\n  targetRef: {kind: Mesh}\n  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Allow}\nEOF");
  const meshes = items(await get("/meshes")).map((m) => m.name);
  const href = (p) => `#/policies/${encodeURIComponent(p.document.mesh)}/${p.document.type}/${encodeURIComponent(p.document.name)}`;
  return section("Policies", table(state, rows, [
    { title: "Kind", cell: (p) => p.document.type, text: (p) => p.document.type },
    { title: "Name", cell: (p) => link(href(p), p.document.name), text: (p) => p.document.name },
    { title: "Mesh", cell: (p) => p.document.mesh },
    { title: "Target", cell: (p) => targetText(p.document) },
    { title: "Origin", cell: (p) => {
      const labels = p.document.labels || {};
      return labels["gossamer.io/origin"] === "zone" ? `zone ${labels[ZONE_LABEL]}` : (labels["gossamer.io/origin"] || (isGlobal(ctx) ? "global" : "this zone"));
    } },
    { title: "Selects", cell: (p) => (p.dataplanes.length
      ? h("span", { title: p.dataplanes.map((d) => d.name).join(", ") }, `${p.dataplanes.length} dataplane${p.dataplanes.length > 1 ? "s" : ""}`)
      : h("span", { class: "muted" }, "no dataplane")) },
  ], { rerender: ctx.rerender, placeholder: "Filter by name", total: page.total, selects: [
    { key: "kind", label: "kinds", values: page.kinds, of: (p) => p.document.type },
    { key: "mesh", label: "meshes", values: meshes, of: (p) => p.document.mesh }] }));
}
