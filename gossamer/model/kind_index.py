"""Every kind's names and scope as a plain table: what a CLI command needs to address one.

``gossamer get meshes`` has to turn ``meshes`` into the REST path ``/meshes`` and know
that Mesh is not mesh-scoped; the registry (``gossamer.model.registry``) knows that too,
but building it imports every kind module and their pydantic models (about 0.3 s of
CPU, most of the CLI's start-up before this table). So the names live here a second
time, in a module that imports no model: ``KINDS`` lists them, ``find_kind`` looks one up
the way ``Registry.find`` does (type name, noun, plural or alias, case-insensitively;
plurals also without their dash, ``zoneingresses``), and
``tests/unit/test_kind_index.py`` fails as soon as the table and the registry's
descriptors disagree, so a new kind module that is not listed here is caught.

``check_name`` is the resource-name rule (pure too); ``gossamer.model.base`` re-exports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gossamer.errors import FieldError

MAX_NAME_LENGTH = 253
# Resource names: DNS-1123-like, but synced zone resources may carry dots and hashes.
RESOURCE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.\-]*[a-z0-9])?$")


@dataclass(frozen=True)
class KindName:
    """A kind as a client addresses it (the fields of ``KindDescriptor`` it needs)."""

    name: str
    path: str
    noun: str
    alias: str
    mesh_scoped: bool
    is_policy: bool
    module: str  # the ``gossamer.model`` module that holds its descriptor

    @property
    def plural(self) -> str:
        return self.path


def _policy(name: str, alias: str, path: str = "") -> KindName:
    lower = name.lower()
    return KindName(name, path or f"{lower}s", lower, alias, True, True, lower)


KINDS: tuple[KindName, ...] = (
    KindName("Dataplane", "dataplanes", "dataplane", "dp", True, False, "dataplane"),
    KindName("GlobalSecret", "global-secrets", "globalsecret", "gsecret", False, False,
             "secret"),
    KindName("Mesh", "meshes", "mesh", "mesh", False, False, "mesh"),
    _policy("MeshAccessLog", "mal"),
    _policy("MeshCircuitBreaker", "mcb"),
    KindName("MeshExternalService", "meshexternalservices", "meshexternalservice", "mes", True,
             False, "meshexternalservice"),
    _policy("MeshFaultInjection", "mfi"),
    _policy("MeshHTTPRoute", "mhr"),
    _policy("MeshHealthCheck", "mhc"),
    _policy("MeshLoadBalancingStrategy", "mlbs", "meshloadbalancingstrategies"),
    _policy("MeshMetric", "mm"),
    _policy("MeshPassthrough", "mpass"),
    _policy("MeshRateLimit", "mrl"),
    _policy("MeshRetry", "mr", "meshretries"),
    _policy("MeshTCPRoute", "mtr"),
    _policy("MeshTimeout", "mt"),
    _policy("MeshTrace", "mtrace"),
    _policy("MeshTrafficPermission", "mtp"),
    KindName("MeshTrust", "mesh-trusts", "meshtrust", "mtrust", False, False, "meshtrust"),
    KindName("Secret", "secrets", "secret", "secret", True, False, "secret"),
    KindName("TokenRevocation", "token-revocations", "tokenrevocation", "trev", False, False,
             "tokenrevocation"),
    KindName("TokenTrust", "token-trusts", "tokentrust", "tt", False, False, "tokentrust"),
    KindName("VirtualIP", "virtual-ips", "virtualip", "vip", True, False, "virtualip"),
    KindName("Zone", "zones", "zone", "zone", False, False, "zone"),
    KindName("ZoneCertificate", "zone-certificates", "zonecertificate", "zcert", False, False,
             "zonecertificate"),
    KindName("ZoneCertificateRequest", "zone-certificate-requests", "zonecertificaterequest",
             "zcr", False, False, "zonecertificate"),
    KindName("ZoneCpReplica", "zone-cp-replicas", "zonecpreplica", "zcpr", False, False,
             "zonereplica"),
    KindName("ZoneEgress", "zone-egresses", "zoneegress", "ze", False, False, "zoneegress"),
    KindName("ZoneHealth", "zone-healths", "zonehealth", "zh", False, False, "zonehealth"),
    KindName("ZoneIngress", "zone-ingresses", "zoneingress", "zi", False, False, "zoneingress"),
    KindName("ZoneInsight", "zone-insights", "zoneinsight", "zinsight", False, False,
             "zoneinsight"),
    KindName("ZoneTrustStatus", "zone-trust-statuses", "zonetruststatus", "ztrust", False,
             False, "zonetrust"),
)


def _lookup() -> dict[str, KindName]:
    table: dict[str, KindName] = {}
    for kind in KINDS:
        for key in (kind.name, kind.noun, kind.path, kind.alias, kind.path.replace("-", "")):
            table.setdefault(key.lower(), kind)
    return table


_LOOKUP = _lookup()


def find_kind(value: str) -> KindName | None:
    """The kind ``value`` names (type, noun, plural with or without dashes, alias)."""
    return _LOOKUP.get(value.lower())


def check_name(value: object, what: str = "name") -> list[FieldError]:
    """The problems of a resource name; none if it is valid."""
    if not isinstance(value, str) or not value:
        return [FieldError(what, "required, a non-empty string")]
    if len(value) > MAX_NAME_LENGTH:
        return [FieldError(what, f"longer than {MAX_NAME_LENGTH} characters")]
    if not RESOURCE_NAME_RE.match(value):
        return [FieldError(what, "expected lower-case letters, digits, '-' and '.', "
                                 "starting and ending with a letter or digit")]
    return []
