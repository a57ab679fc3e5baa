"""Settings of each process, built once by its ``run`` command and passed down whole.

Every listener has a flag and a ``GOSSAMER_*`` environment variable (the CLI reads
both); defaults follow DESIGN §1.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_API_ADDR = "127.0.0.1:5681"
DEFAULT_SYNC_ADDR = "0.0.0.0:5685"
DEFAULT_API_MAX_BODY = 8 << 20
# Below this even one ordinary resource could not be applied; above it one request could
# hold a large share of a small control plane's memory.
MIN_API_MAX_BODY = 1 << 10
MAX_API_MAX_BODY = 1 << 30


def split_addr(addr: str) -> tuple[str, int]:
    """``"127.0.0.1:5681"`` → ``("127.0.0.1", 5681)``; ``"[::1]:5681"`` works too."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this host only: ``localhost``, the whole
    of 127.0.0.0/8 and ``::1``. A wildcard (``0.0.0.0``, ``::``) or any other name is not,
    and names are not resolved: a name could point anywhere tomorrow."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_SIZE = re.compile(r"^\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_byte_size(text: str) -> int:
    """``"8MiB"`` → 8388608. Units are binary whatever their spelling (``k``, ``KB``,
    ``KiB`` are all 1024 bytes), so ``8MB`` does not mean two different things."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"expected a size like 8MiB, 512KiB or 1048576, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)[:1].lower()]


@dataclass(frozen=True)
class ApiSettings:
    """How the HTTP API guards itself (DESIGN §5).

    ``max_body`` bounds every request body (413 beyond it). TLS is on whenever the API
    listens beyond loopback, or when ``tls`` forces it on a loopback address; ``tls_cert``
    and ``tls_key`` are the files to serve with (both or neither), otherwise the control
    plane's own CA signs a certificate for the API, as for its gRPC port.
    """

    max_body: int = DEFAULT_API_MAX_BODY
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if not MIN_API_MAX_BODY <= self.max_body <= MAX_API_MAX_BODY:
            raise ValueError(f"the API body limit must be between 1KiB and 1GiB, "
                             f"got {self.max_body} bytes")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--api-tls-cert and --api-tls-key go together")

    def serves_tls(self, api_addr: str) -> bool:
        host, _ = split_addr(api_addr)
        return self.tls or self.tls_cert is not None or not is_loopback(host)


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
    api: ApiSettings = ApiSettings()
    # Seconds a leader's lease lasts (gossamer.election): a replica that dies is
    # replaced within about this long.
    leader_lease: float = 10.0


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
    ``global_alternates``: more addresses of the same global (its replicas), which the
    sync client tries in turn after ``global_url`` (``global_urls`` is them all).
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
    api: ApiSettings = ApiSettings()
    # Seconds the lease of the zone's leader-only work lasts (gossamer.election).
    leader_lease: float = 10.0
    global_alternates: tuple[str, ...] = ()

    @property
    def directory(self) -> Path:
        return self.data_dir or Path(f".gossamer/zone-{self.zone}")

    @property
    def federated(self) -> bool:
        return self.global_url is not None

    @property
    def global_urls(self) -> tuple[str, ...]:
        """Every address of the global, in the order the sync client tries them."""
        return () if self.global_url is None else (self.global_url, *self.global_alternates)
