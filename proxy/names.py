"""Names the zone CP's generators and the sidecar agent must agree on: the bootstrap's
static clusters and the SDS secrets.

They live apart from ``proxy.context`` (which re-exports them) because the agent needs
the names and nothing else of it: ``proxy.context`` imports every policy's merged conf
(``gossamer.policy``), which a sidecar never loads.
"""

from __future__ import annotations

# The agent serves SDS on a unix socket; its bootstrap names that cluster so.
SDS_CLUSTER = "gossamer_sds"
# The zone CP as Envoy's ADS server, defined in the bootstrap.
ADS_CLUSTER = "gossamer_xds"
# The Envoy admin interface as a cluster, defined by the agent's bootstrap (pointing at the
# admin address): the MeshMetric Prometheus listener routes scrapes to its
# /stats/prometheus through it.
ADMIN_CLUSTER = "gossamer_admin"
# SDS secret names: the workload's certificate+key, and the mesh's trust bundle.
IDENTITY_SECRET = "identity"
TRUST_SECRET = "trust_bundle"


def egress_identity_secret(mesh: str) -> str:
    """The zone egress's certificate and key in ``mesh`` (it holds one per mesh)."""
    return f"{IDENTITY_SECRET}:{mesh}"


def egress_trust_secret(mesh: str) -> str:
    """``mesh``'s trust bundle at the zone egress."""
    return f"{TRUST_SECRET}:{mesh}"
# SDS secret the agent serves for a MeshMetric Prometheus backend with ``tls.mode:
# ProvidedTLS`` (the operator's certificate and key for the metrics endpoint).
PROMETHEUS_TLS_SECRET = "prometheus_tls"
