"""``gossamer demo``: the local multi-zone demo (``deploy.local.demo``), as a CLI command.

Thin on purpose: everything lives in ``deploy/local``; this only parses the flags and
exits with the demo's status (2 when the machine cannot run it: not root, no netns).
"""

from __future__ import annotations

from pathlib import Path

import click

from deploy.local.demo import main


@click.command()
@click.option("--keep", is_flag=True,
              help="Leave the environment running, and print how to call into it and stop it.")
@click.option("--prefix", default="gsm-", show_default=True,
              help="Prefix of every namespace and process mark the demo makes.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data, logs and pid files [default: /tmp/gossamer-local-<prefix>].")
def demo(keep: bool, prefix: str, state_dir: Path | None) -> None:
    """Run a global, zones east and west with ingresses, and a cross-zone call (root).

    web in west calls http://backend.mesh/, served by backend in east through east's zone
    ingress over end-to-end mTLS; the demo prints the answer, the path it took, the zones
    and the dataplanes, then tears everything down unless --keep.
    """
    raise click.exceptions.Exit(main(keep=keep, prefix=prefix, state=state_dir))
