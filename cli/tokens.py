"""``gossamer token``: issue, revoke and rotate zone and dataplane tokens.

An issued token is printed alone on stdout, so ``gossamer token zone --zone east >
east.token`` writes a file that ``zone run --token-file`` reads; what a person needs to
know about it (its id, to revoke it, and its expiry) goes to stderr. Durations, names
and scopes are checked locally with the server's own rules before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click
from pydantic import TypeAdapter, ValidationError

from cli import params
from cli.client import ApiClient, UnexpectedAnswer
from cli.state import state
from gossamer.errors import NotFound
from gossamer.model.fields import Tags
from gossamer.model.labels import SERVICE_TAG
from gossamer.tokens import MAX_DATAPLANES_LIMIT, ZONE_SCOPES

# The server's RevokeRequest.id rule (authority/token_routes.py).
_TOKEN_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9\-]{0,126}[a-z0-9])?$")  # as issued
_TAGS: TypeAdapter[dict[str, str]] = TypeAdapter(Tags)
# tokens.issue counts whole seconds: anything shorter would expire as it is issued.
MIN_VALIDITY = 1.0


def _check_token_id(_: click.Context, __: click.Parameter, value: str) -> str:
    if not _TOKEN_ID_RE.match(value):
        raise click.BadParameter(f"{value!r}: expected the id printed when the token was "
                                 "issued (lower-case letters, digits and '-')")
    return value


def _expiry(epoch: Any) -> str:
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        return "unknown"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_issued(answer: Any, path: str, what: str, revoke_flags: str = "") -> None:
    if not isinstance(answer, Mapping) or not isinstance(answer.get("token"), str):
        raise UnexpectedAnswer(f"POST {path}: expected {{\"token\": ..., \"id\": ...}}")
    token_id = answer.get("id")
    click.echo(answer["token"])
    click.echo(f"issued {what}: id {token_id}, expires {_expiry(answer.get('expiresAt'))}",
               err=True)
    click.echo(f"revoke it with: gossamer token revoke {token_id}{revoke_flags}", err=True)


def _zone_tokens(api: ApiClient, path: str, body: Any) -> Any:
    """POST to a zone-token route; only a global has them, so a 404 says where to go."""
    try:
        return api.post(path, body)
    except NotFound:
        info = api.get("/")
        mode = info.get("mode") if isinstance(info, Mapping) else None
        if mode in (None, "global"):
            raise
        raise NotFound(f"the control plane at {api.base_url} is a {mode} zone: zone tokens "
                       "are issued by the global control plane") from None


@click.group()
def token() -> None:
    """Issue and revoke the tokens zones and sidecars authenticate with."""


@token.command()
@click.option("--zone", required=True, callback=params.name("zone"),
              help="The zone the token admits.")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(sorted(ZONE_SCOPES)),
              help="What the token may do; repeatable  [default: every scope]")
@click.option("--valid-for", default="720h", show_default=True, metavar="DURATION",
              callback=params.duration(MIN_VALIDITY), help="Lifetime, like 720h or 30m.")
@click.pass_context
def zone(ctx: click.Context, zone: str, scopes: tuple[str, ...], valid_for: str) -> None:
    """Issue a zone token (at the global): the token on stdout, its id on stderr."""
    chosen = sorted(set(scopes or ZONE_SCOPES))
    with state(ctx).client() as api:
        answer = _zone_tokens(api, "/tokens/zone", {"zone": zone, "scopes": chosen,
                                                    "validFor": valid_for})
    _print_issued(answer, "/tokens/zone",
                  f"a zone token for zone {zone} (scopes {', '.join(chosen)})")


def _tags(_: click.Context, __: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    """``--tag k=v`` options as a mapping, checked with the Dataplane's tag rules."""
    tags: dict[str, str] = {}
    for item in value:
        key, sep, tag = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE")
        if key == SERVICE_TAG:
            raise click.BadParameter(f"{SERVICE_TAG} is the token's service: use --service")
        if key in tags:
            raise click.BadParameter(f"tag {key!r} is given twice")
        tags[key] = tag
    try:
        _TAGS.validate_python(tags)
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"]) from None
    return tags


@token.command()
@click.option("-m", "--mesh", default="default", show_default=True,
              callback=params.name("mesh"), help="The mesh of the dataplane.")
@click.option("--service", required=True, callback=params.name("service"),
              help="The service (gossamer.io/service) the dataplane may serve.")
@click.option("--name", "dp_name", default=None, callback=params.name("name"),
              help="The one Dataplane name the token admits  [default: any]")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", callback=_tags,
              help="A tag every inbound must carry, vouched for in the certificate; "
                   "repeatable.")
@click.option("--max-dataplanes", type=click.IntRange(1, MAX_DATAPLANES_LIMIT), default=1,
              show_default=True, help="How many Dataplanes may be connected with the token "
                                      "at once.")
@click.option("--valid-for", default="24h", show_default=True, metavar="DURATION",
              callback=params.duration(MIN_VALIDITY), help="Lifetime, like 24h or 30m.")
@click.pass_context
def dataplane(ctx: click.Context, mesh: str, service: str, dp_name: str | None,
              tags: dict[str, str], max_dataplanes: int, valid_for: str) -> None:
    """Issue a dataplane token binding one identity: the token on stdout, its id on
    stderr."""
    body: dict[str, Any] = {"mesh": mesh, "service": service, "validFor": valid_for,
                            "tags": tags, "maxDataplanes": max_dataplanes}
    if dp_name:
        body["name"] = dp_name
    with state(ctx).client() as api:
        answer = api.post("/tokens/dataplane", body)
    bound = "".join([f" named {dp_name}" if dp_name else "",
                     "".join(f", {k}={v}" for k, v in sorted(tags.items())),
                     f", up to {max_dataplanes} dataplanes" if max_dataplanes > 1 else ""])
    _print_issued(answer, "/tokens/dataplane",
                  f"a dataplane token for service {service}{bound} in mesh {mesh}",
                  f" --dataplane --mesh {mesh}")


@token.command()
@click.argument("token_id", metavar="ID", callback=_check_token_id)
@click.option("--dataplane", "is_dataplane", is_flag=True,
              help="ID is a dataplane token's (default: a zone token's).")
@click.option("-m", "--mesh", default=None, callback=params.name("mesh"),
              help="The dataplane token's mesh (default: 'default'); with --dataplane.")
@click.option("--expires-at", type=click.IntRange(min=1), default=None, metavar="UNIX_SECONDS",
              help="The token's expiry, if known: the revocation is forgotten after it.")
@click.pass_context
def revoke(ctx: click.Context, token_id: str, is_dataplane: bool, mesh: str | None,
           expires_at: int | None) -> None:
    """Revoke a token by its id: its bearer is refused from now on."""
    if mesh is not None and not is_dataplane:
        raise click.UsageError("-m/--mesh applies only with --dataplane (zone tokens have "
                               "no mesh)")
    body: dict[str, Any] = {"id": token_id}
    if expires_at is not None:
        body["expiresAt"] = expires_at
    if is_dataplane:
        body["mesh"] = mesh or "default"
    path = "/tokens/dataplane/revoke" if is_dataplane else "/tokens/zone/revoke"
    with state(ctx).client() as api:
        if is_dataplane:
            api.post(path, body)
        else:
            _zone_tokens(api, path, body)
    kind = f"dataplane token (mesh {body['mesh']})" if is_dataplane else "zone token"
    click.echo(f"revoked {kind} {token_id}")


@token.command("rotate-signing-key")
@click.option("--dataplane", "is_dataplane", is_flag=True,
              help="Rotate a mesh's dataplane-token key (default: the zone-token key).")
@click.option("-m", "--mesh", default=None, callback=params.name("mesh"),
              help="The mesh whose key to rotate (default: 'default'); with --dataplane.")
@click.pass_context
def rotate_signing_key(ctx: click.Context, is_dataplane: bool, mesh: str | None) -> None:
    """Add a signing key: new tokens use it, older keys keep verifying theirs until
    their GlobalSecrets are deleted."""
    if mesh is not None and not is_dataplane:
        raise click.UsageError("-m/--mesh applies only with --dataplane (zone tokens have "
                               "no mesh)")
    with state(ctx).client() as api:
        if is_dataplane:
            path = "/tokens/dataplane/signing-keys"
            answer = api.post(path, {"mesh": mesh or "default"})
        else:
            path = "/tokens/zone/signing-keys"
            answer = _zone_tokens(api, path, None)
    kid = answer.get("kid") if isinstance(answer, Mapping) else None
    if not kid:
        raise UnexpectedAnswer(f"POST {path}: expected {{\"kid\": ...}}")
    what = f"dataplane token signing key of mesh {mesh or 'default'}" if is_dataplane \
        else "zone token signing key"
    click.echo(f"added {what} {kid}: it signs new tokens, older keys keep verifying theirs")
