"""What the traffic tests share: ``Lab`` (what the ``lab`` fixture in ``conftest.py`` here
starts) and builders of policy documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.dataplane_apps import HttpApp
from tests.dataplane_env import DataplaneEnv, Sidecar


@dataclass
class Lab:
    env: DataplaneEnv
    web: Sidecar
    apps: dict[str, HttpApp]
    backend: int  # web's outbound port for the backend service
    echo: int  # web's outbound port for the echo service
    directory: Path


def policy(kind: str, name: str, spec: dict[str, Any], mesh: str = "default") -> dict[str, Any]:
    return {"type": kind, "name": name, "mesh": mesh, "spec": spec}


def to_backend(kind: str, name: str, default: dict[str, Any]) -> dict[str, Any]:
    """A policy for web's traffic to the backend service."""
    return policy(kind, name, {
        "targetRef": {"kind": "MeshService", "name": "web"},
        "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": default}]})


# Envoy arms its timers from the time cached at the start of its event-loop turn, so one
# can fire a few milliseconds before the client's own clock says the delay has passed
# (seen: 0.4967 s for a 500 ms timeout).
ENVOY_TIMER_SLACK = 0.02

