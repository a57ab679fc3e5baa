"""Trust bundles and renewals for the sidecars of a zone: what the zone CA
(``zone_cp.ca.ZoneCa``, through ``zone_cp.rollout``'s ``Sidecars`` protocol) drives.

``SidecarTrust`` listens to the ``AgentRegistry`` (``on_change``): it sends each newly
registered sidecar its mesh's current bundle, and sets ``changed`` on every
registration, report and departure for its one consumer, the CA's loop, which clears it
and recomputes from ``sessions_of``. Bundles and renewals go to a session's ``updates``
as Gossamer types (``zone_cp.updates``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from gossamer.pki.certs import bundle_digest
from zone_cp.agent_session import AgentSession, Change
from zone_cp.updates import Renew, TrustBundle

log = logging.getLogger(__name__)


class Sessions(Protocol):
    """The registry as this module needs it (``zone_cp.agents.AgentRegistry``)."""

    def sessions_of(self, mesh: str) -> list[AgentSession]: ...

    def on_change(self, listener: Callable[[Change, AgentSession], None]) -> None: ...


class SidecarTrust:
    """Pushes each mesh's trust bundle to its sidecars and asks them to renew."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        self._bundles: dict[str, tuple[bytes, str]] = {}  # mesh -> (PEM, digest)
        # Told the mesh whenever its bundle changes or its sidecars are asked to renew:
        # agents that are not sidecars (the zone egress) follow the CA so.
        self._followers: list[Callable[[str], None]] = []
        # Set on every registration, report and departure; its one consumer clears it.
        self.changed = asyncio.Event()
        sessions.on_change(self._on_change)

    def _on_change(self, change: Change, session: AgentSession) -> None:
        if change is Change.REGISTERED:
            self._send_bundle(session)  # before its first update is streamed
        self.changed.set()

    def sessions_of(self, mesh: str) -> list[AgentSession]:
        """The live sidecar sessions of ``mesh``, by name."""
        return self._sessions.sessions_of(mesh)

    def follow(self, follower: Callable[[str], None]) -> None:
        """Call ``follower(mesh)`` (synchronously; it must not raise) when ``mesh``'s
        bundle changes and when its sidecars are asked to renew."""
        self._followers.append(follower)

    def _tell(self, mesh: str) -> None:
        for follower in self._followers:
            follower(mesh)

    def set_trust_bundle(self, mesh: str, pem: bytes) -> None:
        """Make ``pem`` the trust bundle of ``mesh``'s sidecars: sent now to every live
        sidecar session of the mesh, to each later one right after ``Registered``, and
        with every certificate ``SignCertificate`` signs. Nothing is sent when the bundle
        holds the same roots as before. Raises ``ValueError`` if ``pem`` is not a
        non-empty PEM bundle (the caller's fault)."""
        digest = bundle_digest(pem)
        if not digest:
            raise ValueError("an empty trust bundle")
        held = self._bundles.get(mesh)
        if held is not None and held[1] == digest:
            return
        self._bundles[mesh] = (pem, digest)
        sessions = self.sessions_of(mesh)
        for session in sessions:
            self._send_bundle(session)
        log.info("trust bundle %s… of mesh %s sent to %d sidecars", digest[:12], mesh,
                 len(sessions))
        self._tell(mesh)

    def resend_trust_bundle(self, mesh: str,
                            predicate: Callable[[AgentSession], bool]) -> int:
        """Send the mesh's current bundle again to the sessions ``predicate`` selects (a
        sidecar that reports another digest missed or refused a push); how many."""
        chosen = [s for s in self.sessions_of(mesh) if predicate(s)]
        for session in chosen:
            self._send_bundle(session)
        return len(chosen)

    def trust_bundle(self, mesh: str) -> tuple[bytes, str] | None:
        """The bundle last set for ``mesh`` and its digest, or None."""
        return self._bundles.get(mesh)

    def _send_bundle(self, session: AgentSession) -> None:
        held = self._bundles.get(session.mesh)
        if held is not None:
            session.updates.put_nowait(TrustBundle(pem=held[0]))

    def renew(self, mesh: str, predicate: Callable[[AgentSession], bool] | None = None) -> int:
        """Ask the sidecars of ``mesh`` that ``predicate`` selects (all without one) for a
        new certificate now; how many were asked. Agents coalesce requests that reach
        them before they send their CSR, so asking twice in a row costs one signature."""
        asked = [s for s in self.sessions_of(mesh) if predicate is None or predicate(s)]
        for session in asked:
            session.renewals_asked += 1
            session.updates.put_nowait(Renew())
        if predicate is None:
            self._tell(mesh)
        return len(asked)
