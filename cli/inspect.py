"""``gossamer inspect``: the live state behind the resources.

``inspect zones`` (at the global): each zone's sync status, when it connected, its last
update, delta counts and control-plane version. ``inspect dataplanes`` (at a zone):
which proxies are online, their certificate's serial and expiry and ACK/NACK counts.
``inspect dataplane NAME --config``: the Envoy resources that proxy was last sent.
``inspect dataplane NAME --config-dump|--stats|--clusters|--certs [--zone Z]``: that sidecar's live
Envoy admin page, relayed by its zone CP from its agent (at the global, through the zone's
sync link: ``sync.relay``); printed as Envoy wrote it, a cut page noted on stderr.
``inspect egresses``: the zone egresses (``gossamer egress run``), where the zone's
sidecars dial them and which meshes they serve. ``inspect certificates``: at a zone, the
workload certificate each sidecar reported; at the global, each zone's intermediate CA per
mesh and which mesh CA signed it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from cli.output import format_age, render_table, to_json, to_yaml
from cli.resources import _checked_name
from cli.state import state
from gossamer.model.labels import DISPLAY_NAME_LABEL


@click.group()
def inspect() -> None:
    """Live state: zones, meshes and their CA, dataplanes, certificates, proxy config."""


def _format(output: str, doc: Any) -> None:
    click.echo(to_json(doc) if output == "json" else to_yaml(doc), nl=output == "json")


def _list(ctx: click.Context, output: str, path: str, headers: list[str],
          row: Callable[[dict[str, Any]], list[str]]) -> None:
    """Fetch an overview list and print it as a table, YAML or JSON."""
    with state(ctx).client() as api:
        items = api.get(path)["items"]
    _print(output, items, headers, row)


def _print(output: str, items: list[dict[str, Any]], headers: list[str],
           row: Callable[[dict[str, Any]], list[str]]) -> None:
    if output != "table":
        _format(output, {"items": items})
    else:
        click.echo(render_table(headers, [row(item) for item in items]))


def expires_in(not_after: Any, now: datetime) -> str:
    """``23h``, ``41m``... until ``not_after`` (ISO 8601); ``expired``; ``-`` if unknown."""
    if not isinstance(not_after, str):
        return "-"
    try:
        when = datetime.fromisoformat(not_after)
    except ValueError:
        return "-"
    if when <= now:
        return "expired"
    return format_age(now.isoformat(), when)


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
    now = state(ctx).now()

    def row(item: dict[str, Any]) -> list[str]:
        xds = item.get("xds") or {}
        cert = item.get("certificate") or {}
        return [item["mesh"], item["name"], "Online" if item["online"] else "Offline",
                cert.get("serial") or "-", cert.get("notAfter") or "-",
                expires_in(cert.get("notAfter"), now),
                str(xds.get("acked", 0)), str(xds.get("nacked", 0)),
                (xds.get("lastNack") or "-")[:60]]

    _list(ctx, output, "/dataplanes/_overviews",
          ["MESH", "NAME", "STATUS", "CERT-SERIAL", "CERT-NOT-AFTER", "EXPIRES-IN", "ACKS",
           "NACKS", "LAST-NACK"], row)


@inspect.command()
@OUTPUT
@click.pass_context
def egresses(ctx: click.Context, output: str) -> None:
    """Zone egresses: each one's zone, where its sidecars dial it and its meshes (at a
    zone its own, at the global every zone's)."""

    def row(item: dict[str, Any]) -> list[str]:
        net = item.get("networking") or {}
        labels = item.get("labels") or {}
        dialled = (f"{net.get('advertisedAddress') or net.get('address')}:"
                   f"{net.get('advertisedPort') or net.get('port')}")
        return [labels.get(DISPLAY_NAME_LABEL) or item["name"], item.get("zone") or "-",
                dialled, ",".join(item.get("meshes") or [])]

    _list(ctx, output, "/zone-egresses", ["NAME", "ZONE", "ADDRESS", "MESHES"], row)


CERT_FIELDS = ("serial", "issuer", "notBefore", "notAfter", "expiresInSeconds", "uris",
               "trustBundleDigest", "health")


def _dataplane_certificate(overview: dict[str, Any]) -> dict[str, Any]:
    cert = overview.get("certificate") or {}
    return {"mesh": overview["mesh"], "dataplane": overview["name"],
            **{f: cert.get(f) for f in CERT_FIELDS}}


@inspect.command()
@OUTPUT
@click.pass_context
def certificates(ctx: click.Context, output: str) -> None:
    """Certificates: at a zone each dataplane's; at the global each zone's intermediate CA."""
    now = state(ctx).now()
    with state(ctx).client() as api:
        at_global = api.get("/").get("mode") == "global"
        path = "/certificates/_overviews" if at_global else "/dataplanes/_overviews"
        answer = api.get(path)["items"]
    if at_global:
        _print(output, answer, ["ZONE", "MESH", "SERIAL", "ISSUER", "NOT-AFTER", "EXPIRES-IN",
                                "SIGNER"],
               lambda i: [i["zone"], i["mesh"], i.get("serial") or "-",
                          i.get("issuer") or i.get("error") or "-", i.get("notAfter") or "-",
                          expires_in(i.get("notAfter"), now), i.get("signer") or "-"])
        return
    _print(output, [_dataplane_certificate(i) for i in answer],
           ["MESH", "DATAPLANE", "SERIAL", "ISSUER", "NOT-AFTER", "EXPIRES-IN"],
           lambda i: [i["mesh"], i["dataplane"], i["serial"] or "-", i["issuer"] or "-",
                      i["notAfter"] or "-", expires_in(i["notAfter"], now)])


@inspect.command()
@click.argument("name")
@click.option("-m", "--mesh", default="default", show_default=True)
@click.option("--config", "show_config", is_flag=True,
              help="Show the Envoy resources last sent to this proxy.")
@click.option("--config-dump", "page", flag_value="config_dump",
              help="Envoy's live /config_dump, from the sidecar's agent.")
@click.option("--stats", "page", flag_value="stats", help="Envoy's live /stats.")
@click.option("--clusters", "page", flag_value="clusters", help="Envoy's live /clusters.")
@click.option("--certs", "page", flag_value="certs",
              help="Envoy's live /certs: the certificates it serves with and their expiry.")
@click.option("-z", "--zone", default=None,
              help="The dataplane's zone (needed at the global for the live pages).")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
@click.pass_context
def dataplane(ctx: click.Context, name: str, mesh: str, show_config: bool, page: str | None,
              zone: str | None, output: str) -> None:
    """One dataplane's state, with --config its effective Envoy config, or with
    --config-dump, --stats, --clusters or --certs its live Envoy admin page."""
    _checked_name(name, "name")
    _checked_name(mesh, "mesh")
    if page is not None:
        _envoy_page(ctx, name, mesh, page, zone)
        return
    path = f"/meshes/{mesh}/dataplanes/{name}/" + ("_config" if show_config else "_overview")
    with state(ctx).client() as api:
        _format(output, api.get(path))


def _envoy_page(ctx: click.Context, name: str, mesh: str, page: str, zone: str | None) -> None:
    """Print the page as Envoy wrote it; a note on stderr when a hop cut it."""
    if zone is not None:
        _checked_name(zone, "zone")
    with state(ctx).client() as api:
        answer = api.get(f"/meshes/{mesh}/dataplanes/{name}/_envoy/{page}",
                         params={"zone": zone} if zone else None)
    click.echo(answer["body"], nl=not answer["body"].endswith("\n"))
    if answer.get("note"):
        click.echo(f"note: {answer['note']}", err=True)
    if answer.get("httpStatus") != 200:
        raise click.ClickException(f"Envoy's admin answered HTTP {answer.get('httpStatus')}")


@inspect.command()
@OUTPUT
@click.pass_context
def services(ctx: click.Context, output: str) -> None:
    """Services per zone: instances and protocol (at the global: every zone's)."""
    _list(ctx, output, "/services/_overviews",
          ["MESH", "SERVICE", "ZONE", "INSTANCES", "PROTOCOL", "SEEN-VIA"],
          lambda i: [i["mesh"], i["service"], i["zone"] or "-", str(i["instances"]),
                     i["protocol"], i["via"]])
