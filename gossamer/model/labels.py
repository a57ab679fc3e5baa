"""Every label and tag key Gossamer itself writes or reads, in one place.

Keys under ``gossamer.io/`` are reserved (``RESERVED_PREFIX``): a user may set them only
where a module says so (``zone_cp.admission``). They come in three groups:

- **Dataplane tags** on inbounds: the service a workload serves, its protocol, its zone.
- **Sync labels** on resources: who owns a synced copy (``ORIGIN_LABEL`` is
  ``ORIGIN_GLOBAL`` or ``ORIGIN_ZONE``), the zone a zone-originated resource came from,
  and the name it had there (the global stores it under a zone-hashed name).
- **Bookkeeping labels** on resources the control planes write for themselves: which
  Dataplanes an agent registered, the token signing keys and their mesh and key id, the
  stored CA and zone CA keys, an agent's VIP-listener opt-in, the revocations of older
  versions.

The values are part of the stored and synced data: changing one is a migration.
"""

from __future__ import annotations

RESERVED_PREFIX = "gossamer.io/"

# -- Dataplane inbound tags ----------------------------------------------------------------
SERVICE_TAG = "gossamer.io/service"
PROTOCOL_TAG = "gossamer.io/protocol"
# Set on every inbound of a proxy whose zone is known (policy selection by zone).
ZONE_TAG = "gossamer.io/zone"

# -- sync: ownership and provenance ------------------------------------------------------
ORIGIN_LABEL = "gossamer.io/origin"
ORIGIN_GLOBAL = "global"
ORIGIN_ZONE = "zone"
# The zone a zone-originated resource came from (the same key as ``ZONE_TAG``).
ZONE_LABEL = "gossamer.io/zone"
# The name a zone-originated resource has in its zone; the global's copy is zone-hashed.
DISPLAY_NAME_LABEL = "gossamer.io/display-name"

# -- bookkeeping of the control planes ----------------------------------------------------
# Marks a Dataplane an agent registered, so a restarted CP knows which stored ones are its
# to expire; a hand-applied Dataplane has no agent to wait for.
AGENT_LABEL = "gossamer.io/registered-by"
AGENT_VALUE = "agent"
# The zone CP replica an agent-registered resource's session lives on (zone CP replicas
# on one store: each expires only its own leftovers, zone_cp.leftovers).
CP_REPLICA_LABEL = "gossamer.io/cp-replica"
# An agent's opt-in to VIP listeners for its own sidecar (``zone_cp.mesh_dns``).
VIP_OUTBOUNDS_LABEL = "gossamer.io/vip-outbounds"
# On the VirtualIP of a MeshExternalService (``<name>.extsvc.mesh``): its name.
EXTERNAL_SERVICE_LABEL = "gossamer.io/external-service"
# Token signing keys (GlobalSecrets): the key's purpose, its mesh, its key id.
KEY_LABEL = "gossamer.io/signing-key"
MESH_LABEL = "gossamer.io/mesh"
KID_LABEL = "gossamer.io/key-id"
# What older versions stored: revoked token ids as one JSON secret per purpose.
OLD_REVOCATIONS_LABEL = "gossamer.io/revocations"
# A builtin CA's stored key and certificate (``gossamer.pki.backends.builtin``).
CA_LABEL = "gossamer.io/ca"
# A zone CP's intermediate CA key (``zone_cp.intermediates``).
ZONE_KEY_LABEL = "gossamer.io/zone-ca-key"
