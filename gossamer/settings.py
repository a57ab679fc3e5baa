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
