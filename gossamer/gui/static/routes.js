// A sidecar's traffic routes from its live Envoy: each outbound listener (from the config
// dump) -> the clusters its filter chains or routes send to -> each cluster's endpoints
// with their priority and locality zone (from the /clusters page). The zone CP puts local
// instances at priority 0 in their own zone and each remote zone's ingress at priority 1
// with locality zone = that zone (proxy/envoy/endpoints.py), so the zone names where
// traffic goes. Pure: text in, rows out.

function typed(filter) {
  return filter.typed_config || {};
}

function routeClusters(route) {
  const action = route.route || {};
  if (action.cluster) return [action.cluster];
  return ((action.weighted_clusters || {}).clusters || []).map((c) => c.name);
}

function routeTables(dump) {
  const tables = {};
  for (const config of dump.configs || []) {
    for (const entry of config.dynamic_route_configs || []) {
      const rc = entry.route_config || {};
      tables[rc.name] = (rc.virtual_hosts || []).flatMap((vh) => (vh.routes || []).flatMap(routeClusters));
    }
  }
  return tables;
}

function listenerClusters(listener, tables) {
  const out = new Set();
  for (const chain of listener.filter_chains || []) {
    for (const filter of chain.filters || []) {
      const cfg = typed(filter);
      if (cfg.cluster) out.add(cfg.cluster);
      ((cfg.weighted_clusters || {}).clusters || []).forEach((c) => out.add(c.name));
      const rds = cfg.rds && cfg.rds.route_config_name;
      if (rds) (tables[rds] || []).forEach((c) => out.add(c));
      for (const vh of (cfg.route_config || {}).virtual_hosts || []) {
        (vh.routes || []).flatMap(routeClusters).forEach((c) => out.add(c));
      }
    }
  }
  return [...out];
}

export function parseClusters(text) {
  const clusters = {};
  for (const line of (text || "").split("\n")) {
    const parts = line.split("::");
    if (parts.length !== 4 || !parts[1].includes(":")) continue;
    const [name, host, field, value] = parts;
    const hosts = (clusters[name] ??= {});
    const entry = (hosts[host] ??= { address: host, zone: "", priority: 0, health: "", weight: 1 });
    if (field === "zone") entry.zone = value;
    else if (field === "priority") entry.priority = Number(value);
    else if (field === "health_flags") entry.health = value;
    else if (field === "weight") entry.weight = Number(value);
  }
  return Object.fromEntries(Object.entries(clusters).map(([k, v]) => [k, Object.values(v)]));
}

// -> [{listener, address, clusters: [{name, endpoints: [{address, zone, priority, health}]}]}]
export function outboundRoutes(dumpText, clustersText) {
  let dump;
  try {
    dump = JSON.parse(dumpText || "{}");
  } catch {
    return [];
  }
  const tables = routeTables(dump);
  const endpoints = parseClusters(clustersText);
  const rows = [];
  for (const config of dump.configs || []) {
    for (const entry of config.dynamic_listeners || []) {
      const listener = (entry.active_state || {}).listener;
      if (!listener || !String(listener.name).startsWith("outbound")) continue;
      const sa = (listener.address || {}).socket_address || {};
      rows.push({
        listener: listener.name, address: `${sa.address}:${sa.port_value}`,
        clusters: listenerClusters(listener, tables).map((name) => ({ name, endpoints: endpoints[name] || [] })),
      });
    }
  }
  return rows.sort((a, b) => a.listener.localeCompare(b.listener));
}
