"""Who may open an agent session: the bearer's token, checked before a byte of the
request is read.

A dataplane token is verified with the keys of the mesh it claims; an unknown mesh is
refused exactly like a forged token (``UNTRUSTED``), so an unauthenticated caller learns
nothing about meshes. Only a signer of dataplane tokens (a standalone zone) may verify
with keys of its own; a federated zone verifies with the ``TokenTrust`` the global sent,
and without one refuses every token (``signer=False``). Another kind's token (a zone
token, for a zone ingress or egress) is verified by the registrars that take that kind
(``zone_cp.ingresses``, ``zone_cp.egresses``): the first that admits it. What the token
then admits (which Dataplane, which name, how many) is ``zone_cp.admission``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import jwt

from authority.token_authority import TokenAuthority
from gossamer.errors import GossamerError, NotFound, Unauthorized
from gossamer.resources import ResourceManager
from gossamer.tokens import DATAPLANE, Claims, TokenRejected, peek

# The one answer to a token no mesh here trusts: the same for an unknown mesh, an unknown
# signing key and a bad signature, so an unauthenticated caller cannot probe for meshes.
UNTRUSTED = ("token rejected: it was not issued for a mesh of this control plane "
             "(unknown mesh, signing key or signature)")
_UNTRUSTED_REASONS = frozenset({"unknown-key", "bad-signature", "wrong-mesh"})


class TokenVerifier(Protocol):
    """Verifies the tokens of one kind other than a dataplane token."""

    token_kind: str

    async def verify(self, token: str | None) -> Claims: ...


async def _first_admitting(verifiers: list[TokenVerifier], token: str | None) -> Claims:
    """The claims of the first verifier that admits ``token`` (the zone ingress's and
    the zone egress's both take zone tokens, each with its own scope); if none does,
    the refusal of the one whose scope the token claims, else the first's."""
    refusals: list[GossamerError] = []
    for verifier in verifiers:
        try:
            return await verifier.verify(token)
        except GossamerError as exc:
            refusals.append(exc)
    claimed = set(_unverified_scopes(token))
    for verifier, refused in zip(verifiers, refusals, strict=True):
        if getattr(verifier, "scope", None) in claimed:
            raise refused
    raise refusals[0]


def _unverified_scopes(token: str | None) -> list[str]:
    try:
        scopes = jwt.decode(token or "", options={"verify_signature": False}).get("scope")
    except jwt.PyJWTError:
        return []
    return [str(x) for x in scopes] if isinstance(scopes, list) else []


class AgentAuth:
    """Verifies an agent's bearer token; every refusal is ``Unauthorized``
    (UNAUTHENTICATED) or what the other kind's verifier raises."""

    def __init__(self, manager: ResourceManager,
                 others: Mapping[str, TokenVerifier] | None = None, *,
                 signer: bool = True) -> None:
        self._manager = manager
        self._others = others or {}
        self.signer = signer  # False at a federated zone: the global signs its tokens

    def authority(self, mesh: str) -> TokenAuthority:
        """The verifier of ``mesh``'s dataplane tokens at this control plane."""
        return TokenAuthority(self._manager, DATAPLANE, mesh, signer=self.signer)

    async def admit(self, token: str | None) -> Claims:
        """Verify the bearer's token before anything else of its request is read: a
        dataplane token with the keys of the mesh it claims, another kind's (a zone
        token) by the registrar that takes it."""
        try:
            kind, mesh = peek(token)
        except TokenRejected as exc:
            raise Unauthorized(exc.detail) from None
        verifiers = [o for o in self._others.values() if o.token_kind == kind]
        if verifiers:
            return await _first_admitting(verifiers, token)
        if kind != DATAPLANE:
            raise Unauthorized(f"a {kind or 'kind-less'} token does not admit an agent "
                               "here; a sidecar presents a dataplane token")
        return await self.verify_dataplane(token, mesh)

    async def verify_dataplane(self, token: str | None, mesh: str) -> Claims:
        """A dataplane token of ``mesh`` (the mesh it claims), or ``Unauthorized`` with
        one answer (``UNTRUSTED``) whether the mesh is unknown or the token forged."""
        try:
            if not mesh:
                raise NotFound("a dataplane token without a mesh")
            await self._manager.get("Mesh", mesh)
            return await self.authority(mesh).verify(token)
        except NotFound:
            raise Unauthorized(UNTRUSTED) from None
        except TokenRejected as exc:
            detail = UNTRUSTED if exc.reason in _UNTRUSTED_REASONS else exc.detail
            raise Unauthorized(detail) from None
