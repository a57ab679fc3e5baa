"""The zone ingress agent: register the ZoneIngress, write Envoy's bootstrap, run Envoy.

It is the sidecar agent minus everything about identity, built from the same parts
(``proxy.agent``): the ``Session`` registers with the zone CP and stays open (its first
message is this ingress's ``ZoneIngress`` document instead of a Dataplane; the zone
token is the bearer), ``bootstrap`` writes Envoy's bootstrap (delta ADS to the zone CP
with the token; no SDS cluster, since the ingress has no secret to serve) and
``EnvoySupervisor`` runs Envoy. ``proxy.agent.agent.run_agent`` runs it as a process.

No key is made, no CSR is sent and nothing in the work directory is a private key: the
ingress only forwards TLS by its SNI (``zone_ingress.envoy``). A refusal by the control
plane before the first registration is final (``ControlPlaneRefused``, with the CP's
reason); a control plane that is down is waited for; once Envoy runs, the CP going away
never touches it. The zone token is kept current like a sidecar's dataplane token
(``proxy.agent.token_refresh``): ``--token-file`` is read again at each Session connect,
on SIGHUP (``reload``) and before the token expires, and a new token moves the Session
and then Envoy (a hot restart) to it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from typing import Any

from proxy.agent import bootstrap
from proxy.agent.cp_client import AgentClient, Registration
from proxy.agent.envoy_process import (
    EnvoyCommand,
    EnvoySupervisor,
    parent_death_wrapper,
)
from proxy.agent.parts import Parts
from proxy.agent.session import Session, first_registration
from proxy.agent.settings import EnvoyAgentSettings, checked_registration
from proxy.agent.token_file import INGRESS_TOKEN
from proxy.agent.token_refresh import TokenRefresher
from proxy.names import SDS_CLUSTER

log = logging.getLogger(__name__)

INGRESS_METADATA = "gossamer.io/zone-ingress"

@dataclass(frozen=True, kw_only=True)
class IngressSettings(EnvoyAgentSettings):
    """One ingress's inputs, checked by the command before the agent is built: what every
    Envoy agent has (the token is a zone token), plus the ZoneIngress's own fields.

    ``address``/``port``: where Envoy listens (``--listen``; the ZoneIngress's
    ``networking.address``/``port``); ``advertised``: where other zones dial it, if not
    there (``--advertise``, or the address toward the CP for a wildcard listen).
    """

    name: str
    address: str
    port: int
    advertised: tuple[str, int] | None
    checked_json: str | None = None  # ``registration_json``, once ``checked`` made it

    def document(self) -> dict[str, Any]:
        """The ZoneIngress this ingress registers (the CP fills zone and services)."""
        networking: dict[str, Any] = {"address": self.address, "port": self.port}
        if self.advertised is not None:
            networking["advertisedAddress"], networking["advertisedPort"] = self.advertised
        return {"type": "ZoneIngress", "name": self.name, "networking": networking}

    def checked(self) -> IngressSettings:
        """These settings with the document checked: the runtime ``ingress run`` becomes
        (``cli.agent_runtime``) then registers it without loading the model (pydantic)."""
        return replace(self, checked_json=self.registration_json())

    def registration_json(self) -> str:
        """The document, validated here so a bad flag is an input error, not a refusal."""
        if self.checked_json is not None:
            return self.checked_json
        return checked_registration(self.document(), "ZoneIngress", "zone ingress")


def ingress_bootstrap(settings: IngressSettings, reg: Registration,
                      token: str | None = None) -> dict[str, Any]:
    """The sidecar's bootstrap (``proxy.agent.bootstrap``) without the SDS cluster, and
    with the ingress's name as node metadata instead of a mesh and Dataplane; ``token``
    (default: the one of ``settings``) for its ADS stream."""
    doc = bootstrap.bootstrap(bootstrap.BootstrapParams(
        node_id=reg.node_id, mesh="", dataplane=reg.name, zone=reg.zone, service=reg.name,
        cp_host=settings.cp.host, cp_port=settings.cp.port,
        cp_alternates=tuple((a.host, a.port) for a in settings.cp_alternates),
        cp_ca_pem=settings.cp_ca_pem.decode(), token=token or settings.token, sds_socket="",
        admin_port=settings.admin_port))
    doc["node"]["metadata"] = {INGRESS_METADATA: reg.name}
    static = doc["static_resources"]
    static["clusters"] = [c for c in static["clusters"] if c["name"] != SDS_CLUSTER]
    return doc


class IngressAgent:
    def __init__(self, settings: IngressSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self.client: AgentClient | None = None
        self.session: Session | None = None
        self.envoy: EnvoySupervisor | None = None
        self.tokens: TokenRefresher | None = None
        self.registration: Registration | None = None
        self._parts = Parts()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop(drain=False)
            raise

    async def _start(self) -> None:
        s = self.settings
        registration_json = s.registration_json()
        s.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        s.work_dir.chmod(0o700)
        self.client = AgentClient(s.cp, s.cp_ca_pem, s.token, ca_file=s.cp_ca_file,
                                  alternates=s.cp_alternates)
        self.tokens = tokens = TokenRefresher(s.token_file, self.client, what=INGRESS_TOKEN,
                                              write_bootstrap=self._write_bootstrap)
        self.session = tokens.session = Session(
            self.client, registration_json,
            on_trust_bundle=lambda _: None,  # no certificate to verify
            before_connect=lambda: tokens.reread("connecting"),
            on_registered=tokens.registered, policy=s.session, rng=self._rng)
        session_task = self._parts.spawn(self.session.run(), "ingress-session")
        log.info("registering zone ingress %s with the control plane %s", s.name, s.cp)
        self.registration = reg = await first_registration(self.session.registered,
                                                           session_task)
        tokens.envoy_token = self.session.token or self.client.token
        self._write_bootstrap(tokens.envoy_token)
        self.envoy = tokens.envoy = EnvoySupervisor(EnvoyCommand(
            binary=s.envoy_binary, bootstrap=s.bootstrap_path, work_dir=s.work_dir,
            concurrency=s.concurrency, log_level=s.envoy_log_level, drain_time=s.drain_time,
            wrapper=parent_death_wrapper()),
            admin_port=s.admin_port, policy=s.supervision, rng=self._rng)
        self._parts.spawn(self.envoy.run(), "ingress-envoy")
        self._parts.spawn(tokens.run(), "ingress-token")
        where = f"{s.address}:{s.port}"
        if s.advertised is not None:
            where += " (advertised as {}:{})".format(*s.advertised)
        log.info("zone ingress %s of zone %s listening on %s", reg.name, reg.zone, where)

    def reload(self) -> None:
        """SIGHUP: read the token file again now."""
        if self.tokens is not None:
            self.tokens.hangup()

    def _write_bootstrap(self, token: str) -> None:
        assert self.registration is not None, "written once registered"
        bootstrap.write(self.settings.bootstrap_path,
                        ingress_bootstrap(self.settings, self.registration, token))

    async def wait(self) -> None:
        """Return when a part ends for good (Envoy cannot start); re-raise why."""
        await self._parts.first_end()

    async def stop(self, drain: bool = True) -> None:
        if self.envoy is not None:
            await self.envoy.stop(drain=drain)
        await self._parts.cancel()
        if self.client is not None:
            await self.client.close()
