"""``gossamer inspect``: the live state behind the resources.

``inspect zones`` (at the global): each zone's sync status, when it connected, its last
update, delta counts and control-plane version. ``inspect dataplanes`` (at a zone):
which proxies are online, their certificate expiry and ACK/NACK counts.
``inspect dataplane NAME --config``: the Envoy resources that proxy was last sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from gossamer.cli.output import render_table, to_json, to_yaml
from gossamer.cli.resources import _checked_name
from gossamer.cli.state import state


@click.group()
def inspect() -> None:
    """Live state: zones, dataplanes, effective proxy config."""


def _format(output: str, doc: Any) -> None:
    click.echo(to_json(doc) if output == "json" else to_yaml(doc), nl=output == "json")


def _list(ctx: click.Context, output: str, path: str, headers: list[str],
          row: Callable[[dict[str, Any]], list[str]]) -> None:
    """Fetch an overview list and print it as a table, YAML or JSON."""
    with state(ctx).client() as api:
        items = api.get(path)["items"]
    if output != "table":
        _format(output, {"items": items})
    else:
        click.echo(render_table(headers, [row(item) for item in items]))


OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]),
                      default="table", show_default=True, help="Output format.")


@inspect.command()
@OUTPUT
@click.pass_context
def zones(ctx: click.Context, output: str) -> None:
    """Zones and their sync with the global (run against the global)."""
    def row(item: dict[str, Any]) -> list[str]:
        ins = item["insight"]
        totals = ins["totals"]
        enabled = (item.get("zone") or {}).get("enabled", True)
        status = ins["status"] if enabled else f"{ins['status']} (disabled)"
        return [item["name"], status, ins.get("connectedAt") or "-", ins.get("lastUpdate") or "-",
                f"{totals['sent']}/{totals['acked']}/{totals['nacked']}",
                ins.get("version") or "-"]

    _list(ctx, output, "/zones/_overviews", ["NAME", "STATUS", "CONNECTED", "LAST-UPDATE",
                                              "SENT/ACKED/NACKED", "VERSION"], row)


@inspect.command()
@OUTPUT
@click.pass_context
def dataplanes(ctx: click.Context, output: str) -> None:
    """Dataplanes, whether their agent is online, certificates and xDS outcomes."""
    def row(item: dict[str, Any]) -> list[str]:
        xds = item.get("xds") or {}
        cert = item.get("certificate") or {}
        return [item["mesh"], item["name"], "Online" if item["online"] else "Offline",
                cert.get("expires", "-"), str(xds.get("acked", 0)), str(xds.get("nacked", 0)),
                (xds.get("lastNack") or "-")[:60]]

    _list(ctx, output, "/dataplanes/_overviews", ["MESH", "NAME", "STATUS", "CERT-EXPIRY",
                                                   "ACKS", "NACKS", "LAST-NACK"], row)


@inspect.command()
@click.argument("name")
@click.option("-m", "--mesh", default="default", show_default=True)
@click.option("--config", "show_config", is_flag=True,
              help="Show the Envoy resources last sent to this proxy.")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
@click.pass_context
def dataplane(ctx: click.Context, name: str, mesh: str, show_config: bool, output: str) -> None:
    """One dataplane's state, or with --config its effective Envoy config."""
    _checked_name(name, "name")
    _checked_name(mesh, "mesh")
    path = f"/meshes/{mesh}/dataplanes/{name}/" + ("_config" if show_config else "_overview")
    with state(ctx).client() as api:
        _format(output, api.get(path))


@inspect.command()
@OUTPUT
@click.pass_context
def services(ctx: click.Context, output: str) -> None:
    """Services per zone: instances and protocol (at the global: every zone's)."""
    _list(ctx, output, "/services/_overviews",
          ["MESH", "SERVICE", "ZONE", "INSTANCES", "PROTOCOL", "SEEN-VIA"],
          lambda i: [i["mesh"], i["service"], i["zone"] or "-", str(i["instances"]),
                     i["protocol"], i["via"]])
