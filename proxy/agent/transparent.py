"""``proxy run --transparent``: ask for the capture listeners, and run as the sidecar user.

Two things make a sidecar transparent. Its Dataplane carries
``networking.transparentProxying`` with the redirect's ports (``with_capture``; the ones in
``proxy.redirect.defaults`` unless the file sets its own), so the zone CP generates the
capture listeners (``proxy.envoy.transparent``). And its own traffic must not be
captured: ``gossamer proxy redirect install`` lets the sidecar user's packets pass, so
Envoy (its upstream connections) and the agent (its resolver's forwarded queries) must
both run as that user, or every connection they open comes back to them.

Started as root, the agent therefore runs itself again as that user (``become``): the
whole command is executed anew under ``setpriv`` with the user's uid, gid and groups and
one capability, ``CAP_NET_BIND_SERVICE`` (inheritable, ambient and the only one in the
bounding set), so that Envoy, a child of the agent, may still bind an inbound port below
1024 and nothing else is kept. The work directory is created and given to the user
first. Started as another user, the agent runs as it is, and that user is the one the
redirect must exclude (``--exclude-uid``).
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from proxy.agent.dataplane_file import DataplaneFile, validate
from proxy.agent.errors import InputError
from proxy.redirect import defaults

log = logging.getLogger(__name__)
CAPABILITY = "net_bind_service"


def with_capture(loaded: DataplaneFile) -> DataplaneFile:
    """``loaded`` with ``networking.transparentProxying`` (the redirect's default ports,
    unless the file already says which), validated again."""
    networking = dict(loaded.document.get("networking") or {})
    networking.setdefault("transparentProxying", {
        "redirectPortOutbound": defaults.OUTBOUND_PORT,
        "redirectPortInbound": defaults.INBOUND_PORT})
    return validate({**loaded.document, "networking": networking}, "--transparent",
                    loaded.unused_vars)


@dataclass(frozen=True)
class SidecarUser:
    name: str
    uid: int
    gid: int


def lookup(name: str) -> SidecarUser:
    """The user ``name`` (or a numeric uid); ``InputError`` saying how to make it."""
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise InputError(
            f"--run-as {name}: no such user; `gossamer proxy redirect install` creates "
            f"{defaults.SIDECAR_USER!r}, or name the user its --exclude-uid lets pass") from None
    return SidecarUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def setpriv_argv(setpriv: str, user: SidecarUser, command: list[str]) -> list[str]:
    """``command`` under ``setpriv`` as ``user`` with ``CAP_NET_BIND_SERVICE`` only."""
    caps = f"-all,+{CAPABILITY}"
    return [setpriv, f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups",
            f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}",
            "--", *command]


def become(user: SidecarUser, work_dir: Path, command: list[str]) -> None:
    """Run ``command`` again as ``user`` (never returns); root only. The work directory
    is made and handed to the user first, since the agent writes Envoy's files there."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise InputError("--transparent as root needs setpriv (Debian's util-linux) to run "
                         f"the sidecar as {user.name}")
    work_dir.mkdir(parents=True, exist_ok=True)
    os.chown(work_dir, user.uid, user.gid)
    log.info("running the sidecar as %s (uid %d), which the redirect lets pass",
             user.name, user.uid)
    argv = setpriv_argv(setpriv, user, command)
    os.execv(setpriv, argv)


def note_user() -> None:
    """Started as a user already: say which one the redirect must exclude."""
    entry = pwd.getpwuid(os.geteuid())
    log.info("transparent sidecar running as %s (uid %d): the redirect must exclude it "
             "(gossamer proxy redirect install --exclude-uid %s)",
             entry.pw_name, entry.pw_uid, entry.pw_name)
