"""Virtual IPs: which address each service of a mesh gets, decided without any I/O.

Theory of operation. A mesh's VIPs live in the zone's store (``VirtualIP`` resources);
``zone_cp.vip_controller`` reads them and the services the zone knows, asks this module
what to change, and writes that back. Three rules make the addresses behave:

- *Stable*: a service that has a valid VIP keeps it. ``allocate`` only hands out
  addresses to services without one, or whose address is no longer usable (outside the
  configured range after the operator changed it, the network or broadcast address, or
  the same address as a service earlier in name order — none of which the controller
  writes, but a VirtualIP applied by hand might hold).
- *Not reused soon*: a new address is the next free one after the highest address in
  use, wrapping to the start of the range, so an address freed low in the range is only
  handed out again once the allocator has gone all the way round (2^28 addresses in the
  default 240.0.0.0/4). The first address of the range (its network address) and, for
  IPv4, the last one (broadcast; 255.255.255.255 in the default range) are never used.
- *Released late*: a VIP whose service is gone is released only after the service has
  been absent for ``grace`` seconds (``Absences``). A zone CP that restarts sees its
  sidecars' Dataplanes vanish and come back, and a service with one instance disappears
  for the length of a restart; neither should move the address that applications and
  their DNS caches hold. The grace period restarts with the process, which only ever
  keeps a VIP longer.

Within the range every address is unique per mesh: a sidecar resolves and listens only on
its own mesh's VIPs, so two meshes may use the same address for different services.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gossamer.errors import GossamerError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CIDR = "240.0.0.0/4"
DEFAULT_GRACE = 3600.0


class VipsExhausted(GossamerError):
    """Every usable address of the range is taken: the operator must widen ``--vip-cidr``
    (or remove services). Retrying helps only once VIPs are released."""

    http_status = 503
    title = "virtual IPs exhausted"

    def __init__(self, network: Network) -> None:
        super().__init__(f"no free virtual IP left in {network}: widen --vip-cidr")
        self.network = network


def parse_cidr(text: str) -> Network:
    """The VIP range from ``--vip-cidr``; ``ValueError`` when it has no usable address."""
    network = ipaddress.ip_network(text.strip(), strict=True)
    if _usable_count(network) < 1:
        raise ValueError(f"{network} has no usable address (use a /30 or wider for IPv4)")
    return network


def _bounds(network: Network) -> tuple[int, int]:
    """The first and last usable addresses as integers."""
    first = int(network.network_address) + 1
    last = int(network.broadcast_address)
    if network.version == 4:
        last -= 1
    return first, last


def _usable_count(network: Network) -> int:
    first, last = _bounds(network)
    return max(last - first + 1, 0)


def usable(network: Network, address: Address) -> bool:
    first, last = _bounds(network)
    return address.version == network.version and first <= int(address) <= last


def next_free(network: Network, taken: set[Address], after: Address | None) -> Address:
    """The first usable address after ``after`` (or from the start) that is not taken,
    wrapping once. Each step skips a taken address, so at most ``len(taken) + 1`` steps."""
    first, last = _bounds(network)
    start = first if after is None or not usable(network, after) else int(after) + 1
    size = last - first + 1
    for step in range(min(len(taken) + 1, size)):
        candidate = first + (start - first + step) % size
        address = ipaddress.ip_address(candidate)
        if address not in taken:
            return address
    raise VipsExhausted(network)


def allocate(network: Network, current: Mapping[str, Address],
             services: Iterable[str]) -> dict[str, Address]:
    """The VIPs to write: ``{service: address}`` for each service of ``services`` that
    has no usable VIP in ``current`` (see the module doc). Services are served in name
    order, so the same inputs always give the same answer."""
    kept: set[Address] = set()
    changes: dict[str, Address] = {}
    wanted = set(services)
    needing = []
    for service in sorted(set(current) | wanted):
        address = current.get(service)
        if address is not None and usable(network, address) and address not in kept:
            kept.add(address)
        elif service in wanted:
            needing.append(service)
    cursor = max(kept, key=int, default=None)
    taken = set(kept)
    for service in needing:
        cursor = next_free(network, taken, cursor)
        taken.add(cursor)
        changes[service] = cursor
    return changes


@dataclass
class Absences:
    """When each allocated service was last seen gone, to release its VIP ``grace``
    seconds later. ``now`` comes from the caller (the controller's clock)."""

    grace: float = DEFAULT_GRACE
    gone_since: dict[str, float] = field(default_factory=dict)

    def expired(self, allocated: Iterable[str], present: Iterable[str],
                now: float) -> list[str]:
        """The services of ``allocated`` whose VIP to release now, in name order."""
        here = set(present)
        allocated = set(allocated)
        for service in list(self.gone_since):
            if service in here or service not in allocated:
                del self.gone_since[service]
        released = []
        for service in sorted(allocated - here):
            since = self.gone_since.setdefault(service, now)
            if now - since >= self.grace:
                released.append(service)
                del self.gone_since[service]
        return released

    def next_expiry(self) -> float | None:
        """When the next VIP is due for release, if any service is gone."""
        if not self.gone_since:
            return None
        return min(self.gone_since.values()) + self.grace
