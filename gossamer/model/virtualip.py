"""VirtualIP: the address that ``<service>.mesh`` resolves to in one zone (DESIGN §6).

The zone CP allocates one per (mesh, service) it knows, local or offered by another
zone's ingress, and keeps it in its own store: it never leaves the zone (each zone has
its own VIPs; a VIP means something only to the sidecars of the zone that made it).

The resource is named after the service. A service name that is no valid resource name
(tag values allow ``_``, ``:`` and capitals) gets a name derived from it, and the
service itself is always in the ``gossamer.io/service`` label, which is what code reads.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel

from gossamer.model.address import IPAddress
from gossamer.model.base import KindDescriptor, Resource, Scope, SyncDirection, check_name
from gossamer.model.fields import SPEC_CONFIG
from gossamer.model.labels import SERVICE_TAG

SERVICE_LABEL = SERVICE_TAG
_INVALID = re.compile(r"[^a-z0-9.\-]+")


class VirtualIPSpec(BaseModel):
    model_config = SPEC_CONFIG

    ip: IPAddress


def resource_name(service: str) -> str:
    """``service`` itself when it is a valid resource name, else a stable name made from
    it (``Backend_svc:80`` -> ``backend-svc-80-<hash>``); the hash keeps two services
    that clean up alike apart."""
    if not check_name(service):
        return service
    cleaned = _INVALID.sub("-", service.lower()).strip(".-")[:40].strip(".-")
    digest = hashlib.sha256(service.encode()).hexdigest()[:12]
    return f"{cleaned}-{digest}" if cleaned else f"service-{digest}"


def service_of(res: Resource) -> str:
    """The service a VirtualIP belongs to: its label, else (written by hand) its name."""
    return res.labels.get(SERVICE_LABEL) or res.name


DESCRIPTOR = KindDescriptor(
    name="VirtualIP",
    spec_model=VirtualIPSpec,
    scope=Scope.MESH,
    path="virtual-ips",
    noun="virtualip",
    alias="vip",
    sync=SyncDirection.LOCAL,
    spec_inline=True,
    description="the zone's virtual IP of a service, that <service>.mesh resolves to",
)
