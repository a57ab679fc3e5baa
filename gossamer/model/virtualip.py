"""VirtualIP: the address that ``<service>.mesh`` resolves to in one zone (DESIGN §6).

The zone CP allocates one per (mesh, service) it knows, local or offered by another
zone's ingress, and keeps it in its own store: it never leaves the zone (each zone has
its own VIPs; a VIP means something only to the sidecars of the zone that made it).

The resource is named after the service. A service name that is no valid resource name
(tag values allow ``_``, ``:`` and capitals) gets a name derived from it, and the
service itself is always in the ``gossamer.io/service`` label, which is what code reads.
A zone-pinned name's VIP (the Mesh's ``routing.zonePinnedNames``) also carries the zone
in ``gossamer.io/zone``; its resource name is derived from ``service/zone``, which is
never a valid name, so it always ends in a digest and never takes a service's name.
A MeshExternalService's VIP (``<name>.extsvc.mesh``) carries its name in
``gossamer.io/external-service`` instead of a service; its key, and what ``service_of``
returns for it, is the external service's destination key ``extsvc@<name>``, also never
a valid resource name nor a service's.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel

from gossamer.model.address import IPAddress
from gossamer.model.base import KindDescriptor, Resource, Scope, SyncDirection, check_name
from gossamer.model.fields import SPEC_CONFIG
from gossamer.model.labels import EXTERNAL_SERVICE_LABEL, SERVICE_TAG, ZONE_TAG
from gossamer.model.meshexternalservice import destination_key, name_of_key

SERVICE_LABEL = SERVICE_TAG
# On the VIP of a zone-pinned name (``<service>.svc.<zone>.mesh``): the zone it pins.
PINNED_ZONE_LABEL = ZONE_TAG
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
    """The service a VirtualIP belongs to: its label, else (written by hand) its name;
    the destination key ``extsvc@<name>`` for an external service's."""
    external = res.labels.get(EXTERNAL_SERVICE_LABEL)
    if external:
        return destination_key(external)
    return res.labels.get(SERVICE_LABEL) or res.name


def pinned_zone(res: Resource) -> str:
    """The zone a VirtualIP's name pins, or "" for the service's any-zone VIP."""
    return res.labels.get(PINNED_ZONE_LABEL, "")


def vip_key(service: str, zone: str = "") -> str:
    """The allocator's key of a VIP: the service, or ``service/zone`` for a zone-pinned
    one (``/`` occurs in no tag value, so no service is named like a pinned key)."""
    return f"{service}/{zone}" if zone else service


def key_of(res: Resource) -> str:
    return vip_key(service_of(res), pinned_zone(res))


def labels_for(key: str) -> dict[str, str]:
    """The labels the VirtualIP of ``key`` carries, so that ``key_of`` gives ``key``."""
    external = name_of_key(key)
    if external is not None:
        return {EXTERNAL_SERVICE_LABEL: external}
    service, zone = split_key(key)
    return {SERVICE_LABEL: service, **({PINNED_ZONE_LABEL: zone} if zone else {})}


def split_key(key: str) -> tuple[str, str]:
    """``vip_key``'s inverse: (service, zone), zone "" for an any-zone VIP."""
    service, _, zone = key.partition("/")
    return service, zone


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
