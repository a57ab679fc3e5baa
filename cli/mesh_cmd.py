"""``gossamer mesh rotate-ca`` and ``gossamer inspect meshes``: a mesh's CA and its rotation.

Both talk to the control plane that owns the mesh roots (the global, or a standalone
zone). ``inspect meshes`` shows each mesh's enabled backend, the rotation phase, the
roots in its trust bundle and how many certificates in all zones still chain to roots
being retired; ``-o yaml`` adds the per-zone progress.
"""

from __future__ import annotations

from typing import Any

import click

from cli.inspect import OUTPUT, _list
from cli.resources import _checked_name
from cli.state import state


@click.group()
def mesh() -> None:
    """Mesh operations beyond apply/get/delete."""


@mesh.command("rotate-ca")
@click.argument("name")
@click.pass_context
def rotate_ca(ctx: click.Context, name: str) -> None:
    """Regenerate the builtin root of mesh NAME, without downtime.

    Both roots are trusted everywhere first, then every certificate is re-issued from
    the new root, then the old root is dropped; follow it with `gossamer inspect meshes`.
    To move to another CA instead, change the Mesh's mtls.enabledBackend.
    """
    _checked_name(name, "mesh")
    with state(ctx).client() as api:
        answer = api.post(f"/meshes/{name}/ca/rotate", {})
    click.echo(f"mesh {name}: root rotation requested (generation "
               f"{answer['requestedGeneration']}); follow it with `gossamer inspect meshes`")


def _short(fingerprints: list[str]) -> str:
    return ",".join(f[:12] for f in fingerprints) or "-"


def mesh_row(item: dict[str, Any]) -> list[str]:
    trust = item.get("trust") or {}
    signer = trust.get("signer") or {}
    other = trust.get("incoming") or trust.get("retiring") or {}
    roots = [r["fingerprint"] for r in trust.get("roots", [])]
    return [item["name"], f"{item['mtls']['enabledBackend']} ({item['mtls']['type']})",
            trust.get("phase", "-"),
            f"{signer.get('backend', '-')}/{signer.get('generation', 0)}" if signer else "-",
            (f"{other['backend']}/{other['generation']}" if other else "-"),
            _short(roots), str(item.get("certificatesOnOldRoots", 0)),
            (trust.get("message") or "")[:80]]


@click.command("meshes")
@OUTPUT
@click.pass_context
def inspect_meshes(ctx: click.Context, output: str) -> None:
    """Meshes: CA backend, rotation phase, roots, certificates on old roots."""
    _list(ctx, output, "/meshes/_overviews",
          ["NAME", "ENABLED-BACKEND", "PHASE", "SIGNER", "ROTATING", "ROOTS",
           "OLD-ROOT-CERTS", "MESSAGE"], mesh_row)
