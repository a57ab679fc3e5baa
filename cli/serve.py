"""What ``global run`` and ``zone run`` share once their settings are built.

``serve`` sets up logging and runs a control plane until a signal. The caller passes a
function that imports the server lazily, so client commands never load its dependencies.
A port that is taken or a data directory that cannot be written (``OSError``) ends in one
``error:`` line and exit 1, like every other failure of the CLI, instead of a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import click

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def serve(log_level: str, run: Callable[[], None]) -> None:
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    try:
        run()
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
