"""Build a topology's network (``build``) and remove everything with its prefix (``clean``).

``build`` makes the namespaces of ``topology`` (see its docstring for the picture): the
WAN bridge, the global's namespace, and per zone a router namespace holding the zone
network's bridge, with one namespace per box (zone CP, ingress, egress, each workload) plugged
into it. Every namespace gets a ``resolv.conf`` naming the environment's upstream DNS
(in the global's namespace), as a host names its own: nothing points a workload at its
sidecar and no VIP route is made, since the transparent proxy (``gossamer proxy redirect
install``, run by ``Environment``) sends the workload's DNS and connections to the
sidecar whatever they are addressed to.

``clean`` needs nothing but the prefix, so it also cleans up after a crash.
"""

from __future__ import annotations

import shutil

from deploy.local import netns
from deploy.local.launch import sidecars_dir
from deploy.local.topology import GLOBAL_IP, WAN, Topology

WAN_BRIDGE = "wan"
ZONE_BRIDGE = "zone"
UPLINK = "eth0"


def wan_port(zone: str) -> str:
    """The zone router's port on the WAN bridge (in the WAN's namespace): a capture there
    sees everything that enters or leaves the zone."""
    return f"z-{zone}"


def _plug(topology: Topology, zone: str, ns: str, port: str, address: str) -> None:
    """A box on the zone network: ``eth0`` with ``address``, default route via the router."""
    router = topology.router_ns(zone)
    netns.add_namespace(ns)
    netns.add_veth(ns, UPLINK, router, port)
    netns.attach(router, port, ZONE_BRIDGE)
    netns.add_address(ns, UPLINK, f"{address}/{topology.subnet(zone).prefixlen}")
    netns.add_route(ns, "default", "via", topology.router_ip(zone))


def _zone_routes(topology: Topology, ns: str, skip: str | None = None) -> None:
    for other in topology.zones:
        if other != skip:
            netns.add_route(ns, str(topology.subnet(other)), "via",
                            topology.router_wan_ip(other))


def build(topology: Topology) -> None:
    t = topology
    netns.add_namespace(t.wan_ns)
    netns.add_bridge(t.wan_ns, WAN_BRIDGE)
    netns.add_namespace(t.global_ns)
    netns.add_veth(t.global_ns, UPLINK, t.wan_ns, "global")
    netns.attach(t.wan_ns, "global", WAN_BRIDGE)
    netns.add_address(t.global_ns, UPLINK, f"{GLOBAL_IP}/{WAN.prefixlen}")
    _zone_routes(t, t.global_ns)
    netns.write_resolv_conf(t.global_ns, [GLOBAL_IP])
    for zone in t.zones:
        _build_zone(t, zone)


def _build_zone(t: Topology, zone: str) -> None:
    router = t.router_ns(zone)
    netns.add_namespace(router)
    netns.enable_forwarding(router)
    netns.add_veth(router, "wan0", t.wan_ns, wan_port(zone))
    netns.attach(t.wan_ns, wan_port(zone), WAN_BRIDGE)
    netns.add_address(router, "wan0", f"{t.router_wan_ip(zone)}/{WAN.prefixlen}")
    netns.add_bridge(router, ZONE_BRIDGE, f"{t.router_ip(zone)}/{t.subnet(zone).prefixlen}")
    _zone_routes(t, router, skip=zone)
    boxes = [(t.cp_ns(zone), "cp", t.cp_ip(zone)),
             (t.ingress_ns(zone), "ingress", t.ingress_ip(zone))]
    if zone in t.egresses:
        boxes.append((t.egress_ns(zone), "egress", t.egress_ip(zone)))
    for ns, port, address in boxes:
        _plug(t, zone, ns, port, address)
        netns.write_resolv_conf(ns, [GLOBAL_IP])
    for w in t.in_zone(zone):
        ns, address = t.workload_ns(w.name), t.workload_ip(w.name)
        _plug(t, zone, ns, "w" + address.rsplit(".", 1)[1], address)
        netns.write_resolv_conf(ns, [GLOBAL_IP])


def clean(prefix: str) -> list[str]:
    """Delete every namespace, ``/etc/netns`` entry, host link and the sidecars' directory
    named with ``prefix``
    (kill their processes first: see ``processes.kill_all``). What it removed."""
    removed = []
    for ns in netns.namespaces(prefix):
        netns.delete_namespace(ns)
        removed.append(f"namespace {ns}")
    for directory in netns.etc_dirs(prefix):
        netns.delete_namespace(directory.name)
        removed.append(f"{directory}")
    for link in netns.host_links(prefix):
        netns.ip("link", "del", link, check=False)
        removed.append(f"link {link}")
    sidecars = sidecars_dir(prefix)
    if sidecars.exists():
        shutil.rmtree(sidecars, ignore_errors=True)
        removed.append(f"{sidecars}")
    return removed
