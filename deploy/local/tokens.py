"""Every token an environment needs, from the global's API in one process.

``Environment.up`` runs ``python -m deploy.local.tokens`` inside the global's namespace
(the API listens on its loopback) with a JSON list of requests on stdin, each
``{"path": FILE, "route": "/tokens/zone" | "/tokens/dataplane", "body": {...}}``, and
each token is written to its file (mode 0600). It is what ``gossamer token zone`` and
``gossamer token dataplane`` send, made from one process: a CLI start per token costs
a second or more of CPU, which on a busy two-core machine adds up to most of ``up``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def token_requests(zones: list[str], workloads: list[tuple[str, str]],
                   zone_path: Callable[[str, str], Path], dataplane_path: Callable[[str], Path],
                   egresses: list[str] | None = None) -> list[dict[str, Any]]:
    """Per zone a ``cp`` and an ``ingress`` token (and an ``egress`` one for the zones in
    ``egresses``), per (workload, service) a dataplane token; ``zone_path(zone, scope)`` and
    ``dataplane_path(workload)`` say where each goes."""
    scopes = [(zone, scope) for zone in zones for scope in ("cp", "ingress")]
    scopes += [(zone, "egress") for zone in egresses or ()]
    out = [{"path": str(zone_path(zone, scope)), "route": "/tokens/zone",
            "body": {"zone": zone, "scopes": [scope]}} for zone, scope in scopes]
    out += [{"path": str(dataplane_path(name)), "route": "/tokens/dataplane",
             "body": {"mesh": "default", "service": service}} for name, service in workloads]
    return out


def issue(api: str, admin_token: str, route: str, body: dict[str, Any]) -> str:
    request = urllib.request.Request(
        api + route, data=json.dumps(body).encode(), method="POST",
        headers={"authorization": f"Bearer {admin_token}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["token"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True)
    parser.add_argument("--admin-token-file", required=True, type=Path)
    args = parser.parse_args()
    admin = args.admin_token_file.read_text().strip()
    for req in json.load(sys.stdin):
        path = Path(req["path"])
        token = issue(args.api, admin, req["route"], req["body"])
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)


if __name__ == "__main__":
    main()
