"""Keeping an agent's token current: re-read the token file, hand the Session over to the
new token, and give Envoy the new token by a hot restart.

The zone CP ends an agent's Session and its Envoy's ADS stream when their token expires
or is revoked (DESIGN §5). An agent that read ``--token-file`` once would then knock
forever with the old token, so ``TokenRefresher`` reads the file again (``reread``):

* whenever the Session (re)connects (``before_connect``: a refused Session picks up a
  replaced token at its next try),
* before each ``SignCertificate`` (``sign_token``),
* on SIGHUP (``hangup``),
* on its own timer before the token in use expires (``token_file.next_check``: at 80 %
  of its life, then halfway to the end while the file holds the same token).

A file that is missing, empty or garbage keeps the current token, with one log line
naming the file per trigger. A new token becomes the client's; if the live Session holds
another, it is handed over (``Session.reconnect``: the old session ends, the new one
registers within a round trip). Once the Session is registered with a token that is not
Envoy's, the bootstrap is rewritten with it (``write_bootstrap``) and Envoy hot
restarted (``EnvoySupervisor.hot_restart``): the new epoch's ADS stream presents the new
token, the listeners move over without a dropped connection, and Envoy is touched only
when the token actually changed. Both the timer and Envoy's update run in ``run``, one
at a time.

Works the same for a sidecar (dataplane token) and a zone ingress (zone token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from proxy.agent import token_file
from proxy.agent.cp_client import AgentClient, Registration
from proxy.agent.envoy_process import EnvoySupervisor
from proxy.agent.session import Session

log = logging.getLogger(__name__)

HANDOVER_WAIT = 10.0  # how long a certificate request waits for the Session to hand over

Clock = Callable[[], float]


class TokenRefresher:
    """The token an agent presents, re-read from ``path`` (``None``: never re-read).

    ``session`` and ``envoy`` are attached once they exist; ``write_bootstrap(token)``
    rewrites Envoy's bootstrap with ``token`` and ``envoy_token`` is the token the
    running Envoy's bootstrap carries."""

    def __init__(self, path: Path | None, client: AgentClient, *,
                 write_bootstrap: Callable[[str], None], what: str = "a token",
                 clock: Clock = time.time) -> None:
        self._path = path
        self._client = client
        self._write_bootstrap = write_bootstrap
        self._what = what
        self._clock = clock
        self._wake = asyncio.Event()
        self._registered = asyncio.Event()
        self.session: Session | None = None
        self.envoy: EnvoySupervisor | None = None
        self.envoy_token = ""
        self.reloads = 0

    def reread(self, why: str) -> bool:
        """Read the file; a new valid-looking token becomes the client's. Whether it did."""
        if self._path is None:
            return False
        try:
            token = token_file.read(self._path, self._what)
        except token_file.TokenFileError as exc:
            log.warning("%s; keeping the current token (read because of: %s)",
                        exc.detail, why)
            return False
        if token == self._client.token:
            return False
        self._client.token = token
        self.reloads += 1
        log.info("a new token in %s (read because of: %s)", self._path, why)
        self._wake.set()  # its own expiry timer, and Envoy once the Session holds it
        return True

    def refresh(self, why: str) -> None:
        """``reread``, and hand the live Session over if it holds another token."""
        self.reread(why)
        session = self.session
        if session is not None and session.token and session.token != self._client.token:
            log.info("handing the session over to the new token")
            session.reconnect()

    def hangup(self) -> None:
        """SIGHUP: read the file now."""
        self.refresh("SIGHUP")

    def registered(self, _: Registration, token: str) -> None:
        """The Session's ``on_registered``: Envoy follows once the CP admits ``token``."""
        self._registered.set()
        if token != self.envoy_token:
            self._wake.set()

    async def sign_token(self, wait: float = HANDOVER_WAIT) -> str:
        """The token to sign a CSR with, after reading the file: the live Session's (the CP
        signs only for the token the Dataplane registered with), once a hand-over this
        started is done, or after ``wait`` seconds whatever the Session holds."""
        self.refresh("a certificate request")
        session = self.session
        if session is None:
            return self._client.token
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while session.token != self._client.token:
                    self._registered.clear()
                    await self._registered.wait()
        return session.token or self._client.token

    async def run(self) -> None:
        """Until cancelled: re-read before the token in use expires; bring Envoy to the
        token the Session registered with."""
        while True:
            self._wake.clear()
            await self._update_envoy()
            delay = token_file.next_check(self._clock(),
                                          token_file.lifetime(self._client.token))
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                self.refresh("the token nears its expiry")

    async def _update_envoy(self) -> None:
        session, envoy = self.session, self.envoy
        if session is None or envoy is None or not session.token:
            return
        token = session.token
        if token == self.envoy_token:
            return
        self._write_bootstrap(token)
        self.envoy_token = token  # whatever happens next, every later start reads it
        if await envoy.hot_restart():
            log.info("Envoy hot restarted (epoch %d) with the new token", envoy.epoch)
        else:
            log.info("Envoy's bootstrap has the new token; Envoy reads it when it starts")
