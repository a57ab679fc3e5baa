"""``gossamer check``: is this installation healthy? One line per check, like ``linkerd check``.

Against the current context (a global, a federated zone or a standalone zone) it asks
``GET /_check`` for the facts and judges them with ``cli.check_rules``. Before those, two
checks of its own: the API answers (a bad context, an unreachable address or a TLS
failure is a ✗ line naming the fix, never a traceback), and it accepts the context's
admin token (admin tokens do not expire; the zone tokens' expiry is a check of its own).
Exit status 0 only if every check passes, 1 otherwise; ``-o json`` prints
``{"ok": bool, "checks": [{name, ok, detail, fix}]}``.
"""

from __future__ import annotations

from typing import Any

import click

from cli.check_rules import Result, judge
from cli.output import to_json
from cli.state import CliState, state
from gossamer.errors import GossamerError, NotFound, Unauthorized

FIX_CONTEXT = ("add or pick a control plane: `gossamer config control-planes add NAME "
               "--address URL --token-file FILE` or `... use NAME`")


def gather(cli: CliState) -> tuple[list[Result], dict[str, Any] | None]:
    """The API and token checks, and the facts if the API gave them."""
    from cli.client import ControlPlaneUnreachable
    from cli.config import ConfigError

    try:
        api = cli.client()
    except ConfigError as exc:
        return [Result("control plane context", False, exc.detail, FIX_CONTEXT)], None
    with api:
        where = api.base_url
        try:
            facts = api.get_one("/_check")
        except ControlPlaneUnreachable as exc:
            return [Result("API reachable", False, exc.detail,
                           f"start the control plane or fix the context's address ({where})")
                    ], None
        except Unauthorized as exc:
            return [Result("API reachable", True, where),
                    Result("admin token", False, exc.detail,
                           "use the control plane's admin token (its DATA_DIR/admin-token) "
                           "in the context's --token-file")], None
        except NotFound:
            return [Result("API reachable", True, where),
                    Result("check supported", False, f"{where} has no /_check",
                           "upgrade the control plane")], None
        except GossamerError as exc:
            return [Result("API reachable", False, exc.detail,
                           "see the control plane's log")], None
    mode = facts.get("mode", "?")
    return [Result("API reachable", True, f"{where} ({mode})"),
            Result("admin token", True, "accepted (admin tokens do not expire)")], facts


def render(results: list[Result]) -> str:
    lines = []
    for r in results:
        lines.append(f"{'✓' if r.ok else '✗'} {r.name}: {r.detail}")
        if not r.ok and r.fix:
            lines.append(f"    fix: {r.fix}")
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed" if failed
                 else f"all {len(results)} checks passed")
    return "\n".join(lines)


@click.command()
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.pass_context
def check(ctx: click.Context, output: str) -> None:
    """Check the installation: API, tokens, zones, ingresses, CA backends, proxies.

    One line per check, ✓ or ✗ with the fix for each ✗. Exit status 0 only if every
    check passes.
    """
    cli = state(ctx)
    results, facts = gather(cli)
    if facts is not None:
        results += judge(facts, cli.now())
    ok = all(r.ok for r in results)
    if output == "json":
        click.echo(to_json({"ok": ok, "checks": [r.to_json() for r in results]}))
    else:
        click.echo(render(results))
    ctx.exit(0 if ok else 1)
