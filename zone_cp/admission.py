"""What a dataplane token admits: which Dataplane, under which name, with what identity.

Pure: no store, no gRPC. ``zone_cp.agents`` calls these with what it read; each refusal
is a ``GossamerError`` (``Forbidden``, ``InvalidResource``, ``ResourceExhausted``) whose
``grpc_status`` the agent API answers with.

A dataplane token binds one identity (``gossamer.tokens.Claims``): its subject is the
service, and it may also name the Dataplane and tags. A registration is admitted only if

* the document's mesh is the token's (the token was verified against that mesh's keys);
* every inbound's ``gossamer.io/service`` is the token's service: a ``web`` token
  cannot register an inbound of ``backend`` and so obtain backend's certificate;
* the Dataplane's name is the token's, when the token names one;
* every inbound carries every tag the token binds, with the same value;
* no inbound sets a reserved tag (``gossamer.io/...``) other than its service and
  protocol (``AGENT_TAGS``): ``gossamer.io/zone`` is the control plane's to set, and a
  sidecar claiming another zone would match policies selecting that zone;
* the agent sets no label reserved to the control plane (``gossamer.io/...``) other
  than the opt-ins in ``AGENT_LABELS``: zone, origin and display-name labels would make
  a zone-local Dataplane pass for a synced one, and the registered-by label is the
  registry's own mark.

The certificate carries what the token vouches for and nothing else
(``zone_cp.ca.workload_uris`` of the token's claims): ``spiffe://<mesh>/<token
service>`` and one ``gossamer://k/v`` URI per tag the token binds. Inbound tags the
token does not bind (a ``version`` the agent chose) are not vouched for, so permissions
that select sources by such a tag need tokens that bind it. A Dataplane with no
inbound (a pure client) gets the token's service as its identity, like any other.
"""

from __future__ import annotations

from collections.abc import Mapping

from gossamer.errors import Forbidden, InvalidResource, ResourceExhausted
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.labels import (
    PROTOCOL_TAG,
    RESERVED_PREFIX,
    SERVICE_TAG,
    VIP_OUTBOUNDS_LABEL,
)
from gossamer.tokens import Claims

# Reserved-prefix labels an agent may set on its own Dataplane: opt-ins that change only
# what its own sidecar gets (VIP listeners, see zone_cp.mesh_dns).
AGENT_LABELS = frozenset({VIP_OUTBOUNDS_LABEL})
# Reserved-prefix tags an agent may set on an inbound: what it serves and how.
AGENT_TAGS = frozenset({SERVICE_TAG, PROTOCOL_TAG})


def reserved_labels(labels: Mapping[str, str]) -> list[str]:
    """The labels in ``labels`` an agent may not set, sorted."""
    return sorted(k for k in labels
                  if k.startswith(RESERVED_PREFIX) and k not in AGENT_LABELS)


def check_labels(labels: Mapping[str, str]) -> None:
    """Refuse reserved labels from an agent, naming them."""
    reserved = reserved_labels(labels)
    if reserved:
        raise InvalidResource(
            f"labels {reserved} are reserved to the control plane and cannot be set by an "
            "agent; remove them from the Dataplane")


def check_binding(claims: Claims, mesh: str, name: str, spec: DataplaneSpec) -> None:
    """Refuse a Dataplane the token does not vouch for, naming the first mismatch."""
    if mesh != claims.mesh:
        raise Forbidden(f"the token is for mesh {claims.mesh!r}, but the Dataplane is in "
                        f"mesh {mesh!r}")
    if claims.name and name != claims.name:
        raise Forbidden(f"the token is for dataplane {claims.name!r}, not {name!r}")
    for i, inbound in enumerate(spec.networking.inbound):
        reserved = sorted(k for k in inbound.tags
                          if k.startswith(RESERVED_PREFIX) and k not in AGENT_TAGS)
        if reserved:
            raise InvalidResource(
                f"inbound[{i}] tag {reserved[0]} is reserved to the control plane and "
                "cannot be set by an agent; remove it from the Dataplane")
        if inbound.service != claims.subject:
            raise Forbidden(f"the token is for service {claims.subject!r}, but inbound[{i}] "
                            f"is service {inbound.service!r}: a token admits one service; "
                            "issue one per service")
        for key, value in sorted(claims.tags.items()):
            if inbound.tags.get(key) != value:
                raise Forbidden(f"the token binds tag {key}={value!r}, but inbound[{i}] "
                                f"has {key}={inbound.tags.get(key)!r}")


def check_capacity(claims: Claims, live: int) -> None:
    """Refuse a registration beyond the token's ``max_dataplanes``, given how many other
    Dataplanes are live with it now."""
    if live >= claims.max_dataplanes:
        raise ResourceExhausted(f"token {claims.token_id} admits at most "
                                f"{claims.max_dataplanes} dataplane(s) at once and {live} "
                                "are connected with it; stop one or issue a token with a "
                                "higher --max-dataplanes")
