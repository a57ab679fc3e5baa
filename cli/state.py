"""What every command shares: the injectable outside world and the chosen context.

``Runtime`` holds what tests replace (the HTTP transport, the clock, the environment);
the root command wraps it in a ``CliState`` with the ``--context`` override, and commands
get an ``ApiClient`` from there. Nothing here is a module-level global.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # imported when a client is made: the agent commands never make one
    from cli.client import ApiClient
    from cli.http_wire import Transport


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Runtime:
    """The outside world: ``transport=None`` means the network, ``env=None`` os.environ."""

    transport: Transport | None = None
    clock: Callable[[], datetime] = _utc_now
    env: Mapping[str, str] | None = None

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self.env is None else self.env


@dataclass(frozen=True)
class CliState:
    runtime: Runtime = field(default_factory=Runtime)
    context: str | None = None

    @property
    def config_path(self) -> Path:
        from cli.config import config_path

        return config_path(self.runtime.environ)

    def client(self) -> ApiClient:
        from cli.client import ApiClient
        from cli.config import resolve_control_plane

        cp = resolve_control_plane(self.context, self.runtime.environ, self.config_path)
        return ApiClient(cp, transport=self.runtime.transport)

    def now(self) -> datetime:
        return self.runtime.clock()


def state(ctx: click.Context) -> CliState:
    obj = ctx.find_object(CliState)
    return obj if obj is not None else CliState()
