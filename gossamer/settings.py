"""Settings of each process, built once by its ``run`` command and passed down whole.

Every listener has a flag and a ``GOSSAMER_*`` environment variable (the CLI reads
both); defaults follow DESIGN §1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_API_ADDR = "127.0.0.1:5681"
DEFAULT_SYNC_ADDR = "0.0.0.0:5685"


def split_addr(addr: str) -> tuple[str, int]:
    """``"127.0.0.1:5681"`` → ``("127.0.0.1", 5681)``; ``"[::1]:5681"`` works too."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class GlobalSettings:
    """The global control plane.

    ``store`` is ``sqlite`` (a file in ``data_dir``), ``memory``, a ``sqlite:///path``
    or a ``postgres://`` URL.
    """

    data_dir: Path = Path(".gossamer/global")
    api_addr: str = DEFAULT_API_ADDR
    sync_addr: str = DEFAULT_SYNC_ADDR
    store: str = "sqlite"
    bootstrap_default_mesh: bool = True
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 15.0
    tls_hosts: tuple[str, ...] = ()


DEFAULT_XDS_ADDR = "0.0.0.0:5678"
DEFAULT_VIP_CIDR = "240.0.0.0/4"


@dataclass(frozen=True)
class ZoneSettings:
    """A zone control plane; without ``global_url`` it is a standalone single-zone mesh.

    ``heartbeat_interval``/``heartbeat_timeout`` bound how long a dead sync stream can
    look alive; ``global_ca`` is the global's CA file (``insecure_skip_verify`` must be
    set explicitly to connect without it). ``vip_cidr`` is the range the zone allocates
    its services' virtual IPs from (``<service>.mesh``, DESIGN §6). ``agent_grace`` is how
    many seconds after a start the Dataplanes and ZoneIngresses a previous run left stored
    wait for their agents to register again before they are removed.
    """

    zone: str
    data_dir: Path | None = None
    api_addr: str = DEFAULT_API_ADDR
    xds_addr: str = DEFAULT_XDS_ADDR
    store: str = "sqlite"
    global_url: str | None = None
    token_file: Path | None = None
    global_ca: Path | None = None
    insecure_skip_verify: bool = False
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 15.0
    tls_hosts: tuple[str, ...] = ()
    vip_cidr: str = DEFAULT_VIP_CIDR
    agent_grace: float = 60.0

    @property
    def directory(self) -> Path:
        return self.data_dir or Path(f".gossamer/zone-{self.zone}")

    @property
    def federated(self) -> bool:
        return self.global_url is not None
