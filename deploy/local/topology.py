"""What a local multi-zone environment is made of: names and addresses, as plain values.

Nothing here touches the system; ``network`` and ``environment`` build what this
describes. Every name starts with the topology's prefix (``gsm-`` by default), so
cleanup can find everything an environment made, even one whose process crashed.

The network (one namespace per box, all of it inside namespaces, nothing in the host's)::

                     WAN 172.31.0.0/24: a bridge in <p>wan
      <p>global 172.31.0.2 (global CP, the upstream DNS)
      <p>east   172.31.0.11 | 10.1.0.1   <p>west   172.31.0.12 | 10.2.0.1   (zone routers)
                            |                                  |
      zone network 10.1.0.0/24: a bridge in <p>east   ... 10.2.0.0/24 in <p>west
        <p>east-cp 10.1.0.2, <p>east-ingress 10.1.0.3, <p>east-egress 10.1.0.4 (when the
        zone runs one: ``egresses``), <p>east-<workload> 10.1.0.10...

Each zone router forwards between its zone network and the WAN and routes the other
zones' networks to their routers, so any box reaches any other without NAT, as zones
joined by routed links would.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

DEFAULT_PREFIX = "gsm-"
WAN = ipaddress.IPv4Network("172.31.0.0/24")
GLOBAL_IP = "172.31.0.2"
# Where the zones' processes listen, inside their own namespaces.
GLOBAL_API_PORT = 5681
GLOBAL_SYNC_PORT = 5685
ZONE_API_PORT = 5681
XDS_PORT = 5678
INGRESS_PORT = 10001
INBOUND_PORT = 10080
APP_PORT = 8080
ENVOY_ADMIN_PORT = 9901
INGRESS_ADMIN_PORT = 9902
EGRESS_PORT = 10002
EGRESS_ADMIN_PORT = 9903
DNS_PORT = 53
MAX_ZONES = 200
MAX_WORKLOADS_PER_ZONE = 200

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_PREFIX = re.compile(r"^[a-z][a-z0-9]*-$")


def _check_name(what: str, name: str, longest: int = 20) -> None:
    if not _NAME.match(name) or len(name) > longest:
        raise ValueError(f"{what} {name!r}: expected lowercase letters, digits and single "
                         f"dashes, starting with a letter, at most {longest} characters")


@dataclass(frozen=True)
class Workload:
    """One application instance with its sidecar, in a namespace of its own.

    ``name`` is the Dataplane's name and unique in the environment; ``service`` is its
    ``gossamer.io/service`` tag. Its app answers every HTTP request with its zone and name.
    """

    name: str
    service: str
    zone: str

    def __post_init__(self) -> None:
        _check_name("workload", self.name)
        _check_name("service", self.service)


@dataclass(frozen=True)
class Topology:
    """Zones (in order: the first is 10.1.0.0/24) and the workloads placed in them;
    ``egresses``: the zones that run a zone egress too."""

    zones: tuple[str, ...]
    workloads: tuple[Workload, ...]
    prefix: str = DEFAULT_PREFIX
    egresses: tuple[str, ...] = ()
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix) or len(self.prefix) > 10:
            raise ValueError(f"prefix {self.prefix!r}: expected lowercase letters and digits "
                             f"ending in one dash, like {DEFAULT_PREFIX!r}")
        if not self.zones or len(self.zones) > MAX_ZONES:
            raise ValueError(f"expected 1 to {MAX_ZONES} zones, got {len(self.zones)}")
        for zone in self.zones:
            _check_name("zone", zone, 12)
            if zone in ("global", "wan"):
                raise ValueError(f"zone {zone!r}: the name is taken by the environment")
        if len(set(self.zones)) != len(self.zones):
            raise ValueError(f"zone names repeat: {self.zones}")
        for zone in self.egresses:
            if zone not in self.zones:
                raise ValueError(f"an egress in unknown zone {zone!r}")
        names = [w.name for w in self.workloads]
        if len(set(names)) != len(names):
            raise ValueError(f"workload names repeat: {names}")
        for w in self.workloads:
            if w.zone not in self.zones:
                raise ValueError(f"workload {w.name!r} is in unknown zone {w.zone!r}")
            if w.name in ("cp", "ingress", "egress"):
                raise ValueError(f"workload {w.name!r}: the name is taken by the zone")
        for zone in self.zones:
            if len(self.in_zone(zone)) > MAX_WORKLOADS_PER_ZONE:
                raise ValueError(f"zone {zone!r}: more than {MAX_WORKLOADS_PER_ZONE} workloads")
        object.__setattr__(self, "_index", {z: i + 1 for i, z in enumerate(self.zones)})

    def in_zone(self, zone: str) -> tuple[Workload, ...]:
        return tuple(w for w in self.workloads if w.zone == zone)

    def workload(self, name: str) -> Workload:
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(f"no workload {name!r}; there are {[w.name for w in self.workloads]}")

    # -- namespaces -------------------------------------------------------------------------

    @property
    def global_ns(self) -> str:
        return f"{self.prefix}global"

    @property
    def wan_ns(self) -> str:
        return f"{self.prefix}wan"

    def router_ns(self, zone: str) -> str:
        return f"{self.prefix}{zone}"

    def cp_ns(self, zone: str) -> str:
        return f"{self.prefix}{zone}-cp"

    def ingress_ns(self, zone: str) -> str:
        return f"{self.prefix}{zone}-ingress"

    def egress_ns(self, zone: str) -> str:
        return f"{self.prefix}{zone}-egress"

    def workload_ns(self, name: str) -> str:
        w = self.workload(name)
        return f"{self.prefix}{w.zone}-{w.name}"

    def namespaces(self) -> list[str]:
        """Every namespace, in the order they are made."""
        out = [self.wan_ns, self.global_ns]
        for zone in self.zones:
            out += [self.router_ns(zone), self.cp_ns(zone), self.ingress_ns(zone)]
            out += [self.egress_ns(zone)] if zone in self.egresses else []
            out += [self.workload_ns(w.name) for w in self.in_zone(zone)]
        return out

    # -- addresses --------------------------------------------------------------------------

    def subnet(self, zone: str) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{self._index[zone]}.0.0/24")

    def _host(self, zone: str, n: int) -> str:
        return str(self.subnet(zone).network_address + n)

    def router_ip(self, zone: str) -> str:
        """The zone router's address on the zone network: its hosts' default gateway."""
        return self._host(zone, 1)

    def router_wan_ip(self, zone: str) -> str:
        return str(WAN.network_address + 10 + self._index[zone])

    def cp_ip(self, zone: str) -> str:
        return self._host(zone, 2)

    def ingress_ip(self, zone: str) -> str:
        return self._host(zone, 3)

    def egress_ip(self, zone: str) -> str:
        return self._host(zone, 4)

    def workload_ip(self, name: str) -> str:
        w = self.workload(name)
        return self._host(w.zone, 10 + self.in_zone(w.zone).index(w))

    # -- well-known URLs --------------------------------------------------------------------

    @property
    def global_sync_url(self) -> str:
        return f"grpcs://{GLOBAL_IP}:{GLOBAL_SYNC_PORT}"

    def cp_url(self, zone: str) -> str:
        return f"https://{self.cp_ip(zone)}:{XDS_PORT}"


def demo(prefix: str = DEFAULT_PREFIX) -> Topology:
    """The demo: ``backend`` in east, ``web`` (which calls it) in west."""
    return Topology(zones=("east", "west"), prefix=prefix,
                    workloads=(Workload("backend-1", "backend", "east"),
                               Workload("web-1", "web", "west")))
