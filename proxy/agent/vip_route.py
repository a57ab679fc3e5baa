"""Whether this sidecar's Envoy can listen on the mesh's VIPs, decided before it registers.

VIP listeners are on by default (``zone_cp.mesh_dns``), but Envoy can bind a VIP only
where the VIP range is routed to ``lo`` in its network namespace: elsewhere every
listener update carrying one is NACKed. The agent runs in that namespace, so it finds
out first, the way Envoy would: it binds a socket to an address of the range.

- Bindable: nothing to do.
- Not bindable, and ``--vip-route``: the agent adds the route itself (``ip route replace
  local <cidr> dev lo``: idempotent, needs CAP_NET_ADMIN, e.g. root in the workload's
  namespace), then checks again. Never by default: on a host's shared namespace the route
  is the operator's decision.
- Still not bindable: it logs the exact command that fixes it and registers the Dataplane
  with ``gossamer.io/vip-outbounds: "false"``, so calls by name wait for the fix instead
  of every listener update being refused. A Dataplane that says ``"true"`` keeps it (the
  operator asked; Envoy's NACK then names the address, and ``gossamer inspect dataplane``
  says the same fix), one that says ``"false"`` is left alone, and a transparent proxy
  (``transparentProxying``) needs no bound VIP at all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass

from gossamer.model.labels import VIP_OUTBOUNDS_LABEL
from proxy.agent.dataplane_file import DataplaneFile

log = logging.getLogger(__name__)

DEFAULT_VIP_CIDR = "240.0.0.0/4"


@dataclass(frozen=True)
class VipRoute:
    """The VIP range the zone CP allocates from (its ``--vip-cidr``), and whether the
    agent may route it to ``lo`` itself."""

    cidr: str = DEFAULT_VIP_CIDR
    add_route: bool = False


def route_command(cidr: str) -> str:
    return f"ip route add local {cidr} dev lo"


def needs_check(dataplane: DataplaneFile) -> bool:
    """Only a Dataplane that did not choose, and binds its VIP listeners, is checked."""
    if dataplane.transparent:
        return False
    return VIP_OUTBOUNDS_LABEL not in dataplane.labels


def opted_out(dataplane: DataplaneFile) -> DataplaneFile:
    """``dataplane`` with the VIP listeners turned off by its label."""
    return dataplane.with_labels({**dataplane.labels, VIP_OUTBOUNDS_LABEL: "false"})


def bindable(cidr: str) -> bool:
    """Whether an address of ``cidr`` can be bound here, as Envoy would bind it."""
    network = ipaddress.ip_network(cidr, strict=False)
    probe = next(network.hosts(), network.network_address)
    family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((str(probe), 0))
        except OSError:
            return False
    return True


async def add_route(cidr: str) -> str | None:
    """Route ``cidr`` to ``lo``; None on success, else what ``ip`` said."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "ip", "route", "replace", "local", cidr, "dev", "lo",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
    except OSError as exc:  # no `ip` (iproute2) here
        return str(exc)
    _, err = await proc.communicate()
    return None if proc.returncode == 0 else err.decode(errors="replace").strip()


async def ready(dataplane: DataplaneFile, vip: VipRoute) -> DataplaneFile:
    """The Dataplane to register: as given when its VIP listeners can work or it chose,
    else turned off with the fix logged."""
    if not needs_check(dataplane) or bindable(vip.cidr):
        return dataplane
    if vip.add_route:
        problem = await add_route(vip.cidr)
        if problem is None and bindable(vip.cidr):
            log.info("routed the VIP range %s to lo for the VIP listeners", vip.cidr)
            return dataplane
        log.warning("--vip-route: could not route %s to lo: %s", vip.cidr,
                    problem or "still not bindable")
    log.warning("VIP listeners are off for this sidecar: the VIP range %s is not routed to "
                "lo in its network namespace, so Envoy could not listen on the services' "
                "addresses. Fix: `%s` (as root, in this namespace; or `gossamer proxy run "
                "--vip-route`), then restart the sidecar. To keep them off without this "
                "message, label the Dataplane %s: \"false\"", vip.cidr,
                route_command(vip.cidr), VIP_OUTBOUNDS_LABEL)
    return opted_out(dataplane)
