"""What ``gossamer check`` concludes from the facts a control plane gave it. Pure.

Each rule is a function of the facts (the JSON of ``GET /_check``, the answer of ``GET /``
and the clock) to ``Result``\\ s: a name, ok or not, what was found, and for a failure the
fix in the operator's terms. The facts are untrusted input: every field read here
tolerates absence and odd types (``_list``, ``_dict``), so a control plane of another
version yields a failing line, never a traceback.

The thresholds are the module's constants: a clock skew beyond ``MAX_SKEW`` (well inside
the ``BACKDATE`` certificates tolerate), a zone token expiring within ``TOKEN_WARNING``,
an intermediate CA with less than ``INTERMEDIATE_LEFT`` of its lifetime left (they are
renewed at two thirds).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_SKEW = dt.timedelta(seconds=30)
TOKEN_WARNING = dt.timedelta(days=7)
INTERMEDIATE_LEFT = 0.25


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _names(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _span(delta: dt.timedelta) -> str:
    seconds = abs(delta.total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.1f}s"


NEW_TOKEN = ("issue a new zone token at the global (`gossamer token zone --zone {zone}`), "
             "write it to the zone CP's --token-file and restart it")


def zone_online(zone: dict[str, Any]) -> Result:
    name = str(zone.get("name"))
    if not zone.get("enabled", True):
        return Result(f"zone {name} online", False, "disabled at the global",
                      f"enable it: apply the Zone {name} with `enabled: true`")
    if zone.get("online"):
        return Result(f"zone {name} online", True, "connected to the global")
    error = str(zone.get("lastError") or "no stream from it")
    fix = (NEW_TOKEN.format(zone=name) if error.startswith(("revoked", "expired"))
           else f"start the zone CP of {name} (`gossamer zone run --zone {name} --global ...`)"
                " and check that it reaches the global's sync port; its log says why it "
                "cannot connect")
    return Result(f"zone {name} online", False, f"offline: {error}", fix)


def zone_token(zone: dict[str, Any], now: dt.datetime) -> Result:
    name = str(zone.get("name"))
    report = _dict(zone.get("report"))
    token_id, expires = report.get("tokenId"), report.get("tokenExpiresAt")
    check = f"zone {name} token"
    if zone.get("tokenRevoked"):
        return Result(check, False, f"token {token_id} is revoked", NEW_TOKEN.format(zone=name))
    if not isinstance(expires, int) or not expires:
        return Result(check, False, "the zone reports no token it could read",
                      f"check the --token-file of the zone CP of {name}")
    left = dt.datetime.fromtimestamp(expires, dt.UTC) - now
    if left <= dt.timedelta(0):
        return Result(check, False, f"token {token_id} expired {_span(left)} ago",
                      NEW_TOKEN.format(zone=name))
    if left < TOKEN_WARNING:
        return Result(check, False, f"token {token_id} expires in {_span(left)}",
                      NEW_TOKEN.format(zone=name))
    return Result(check, True, f"valid, expires in {_span(left)}")


def clock_skew(zone: dict[str, Any]) -> Result | None:
    """None where it cannot be measured (at a zone CP, or with no report)."""
    name = str(zone.get("name"))
    sent = _time(_dict(zone.get("report")).get("reportedAt"))
    received = _time(zone.get("receivedAt"))
    if sent is None or received is None:
        return None
    skew = sent - received
    ahead = "ahead of" if skew.total_seconds() > 0 else "behind"
    detail = f"{_span(skew)} {ahead} the global's clock"
    if abs(skew) > MAX_SKEW:
        return Result(f"zone {name} clock", False, detail,
                      f"synchronise the clocks of the global and of zone {name}'s CP host "
                      "(NTP: chrony or systemd-timesyncd)")
    return Result(f"zone {name} clock", True, detail)


def ingress_checks(facts: dict[str, Any]) -> Iterator[Result]:
    """Each zone's view of every other zone's ingress; a zone with none when there are
    several zones (nothing can reach its services)."""
    zones = _list(facts.get("zones"))
    ingresses = facts.get("ingresses")
    if isinstance(ingresses, list) and len(zones) > 1:
        have = {str(i.get("zone")) for i in _list(ingresses)}
        for zone in zones:
            name = str(zone.get("name"))
            if name not in have:
                yield Result(f"zone {name} ingress", False,
                             "no ZoneIngress: other zones cannot reach its services",
                             f"run `gossamer ingress run` in zone {name}")
    for zone in zones:
        for probe in _list(_dict(zone.get("report")).get("ingresses")):
            target = f"{probe.get('address')}:{probe.get('port')}"
            check = f"ingress of {probe.get('zone')} from {zone.get('name')}"
            if probe.get("reachable"):
                yield Result(check, True, f"{target} accepts TCP connections")
            else:
                yield Result(check, False, f"cannot connect to {target}: {probe.get('error')}",
                             f"check that zone {probe.get('zone')}'s ingress runs and that its "
                             "advertised address (`ingress run --advertise`) is reachable "
                             f"from zone {zone.get('name')}")


def egress_checks(facts: dict[str, Any]) -> Iterator[Result]:
    """Per mesh routed through the zone egress (``routing.zoneEgress``), each zone without
    an egress for it: its sidecars' external (and cross-zone) calls get nothing."""
    serving = {(str(e.get("zone")), str(m)) for e in _list(facts.get("egresses"))
               for m in _names(e.get("meshes"))}
    for mesh in _names(facts.get("egressMeshes")):
        for zone in _list(facts.get("zones")):
            name = str(zone.get("name"))
            if (name, str(mesh)) not in serving:
                yield Result(f"zone {name} egress for mesh {mesh}", False,
                             f"mesh {mesh} routes through the zone egress and zone {name} "
                             "has none: its sidecars' calls through it fail (503)",
                             f"run `gossamer egress run --mesh {mesh}` in zone {name}, or "
                             f"turn routing.zoneEgress off in the Mesh {mesh}")


def ca_checks(facts: dict[str, Any]) -> Iterator[Result]:
    for ca in _list(facts.get("caBackends")):
        check = f"mesh {ca.get('mesh')} CA backend {ca.get('backend')} ({ca.get('type')})"
        if ca.get("ok"):
            yield Result(check, True, "up")
        else:
            yield Result(check, False, str(ca.get("error")),
                         "make the backend reachable and its credentials valid (see the "
                         f"Mesh {ca.get('mesh')}'s mtls.backends), or switch the mesh to a "
                         "working backend")
    for item in _list(facts.get("issuance")):
        if item.get("error"):
            yield Result(f"zone {item.get('zone')} issues certificates for mesh "
                         f"{item.get('mesh')}", False, str(item.get("error")),
                         "fix the mesh's CA backend (above); the zone retries by itself")


def _proxy_lines(facts: dict[str, Any], field: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for zone in _list(facts.get("zones")):
        for item in _list(_dict(zone.get("report")).get(field)):
            yield f"{zone.get('name')}/{item.get('mesh')}/{item.get('name')}", item


def proxy_checks(facts: dict[str, Any]) -> Iterator[Result]:
    """NACKs, certificates, VIP reachability: one line each when all is well, one per
    proxy otherwise."""
    reported = [z for z in _list(facts.get("zones")) if z.get("report")]
    for field, check, good, default_fix in (
            ("nacking", "proxy NACKing its config", "no proxy NACKing",
             "fix or delete the policy the NACK names (`gossamer inspect dataplane NAME "
             "--config` shows what was sent)"),
            ("certificates", "certificate near expiry", "no workload certificate near expiry",
             "check the sidecar's log: it renews at two thirds of the lifetime"),
            ("no_vip_path", "VIP range routed or transparent proxy",
             "every sidecar reaches .mesh VIPs",
             "route the VIP range to lo (`gossamer proxy run --vip-route`) or use the "
             "transparent proxy (`gossamer proxy redirect install`, `proxy run --transparent`)"),
    ):
        key = "noVipPath" if field == "no_vip_path" else field
        bad = list(_proxy_lines(facts, key))
        for where, item in bad:
            yield Result(f"{check}: {where}", False, str(item.get("detail"))[:300],
                         str(item.get("hint") or default_fix))
        if not bad and reported:
            online = sum(int(_dict(z.get("report")).get("online") or 0) for z in reported)
            yield Result(good, True, f"{online} sidecars online in {len(reported)} zones")
    if any(_dict(z.get("report")).get("truncated") for z in reported):
        yield Result("proxy reports complete", False, "a zone listed only its first 100 "
                     "problems of a kind", "fix the ones listed and run the check again")


def intermediate_checks(facts: dict[str, Any], now: dt.datetime) -> Iterator[Result]:
    items = _list(facts.get("intermediates"))
    bad = [r for item in items if (r := _intermediate(item, now)) is not None]
    yield from bad
    if items and not bad:
        yield Result("zone intermediate CAs", True, f"{len(items)} valid, none near expiry")


def _intermediate(item: dict[str, Any], now: dt.datetime) -> Result | None:
    check = f"zone {item.get('zone')} intermediate CA for mesh {item.get('mesh')}"
    start, end = _time(item.get("notBefore")), _time(item.get("notAfter"))
    if start is None or end is None:
        return Result(check, False, str(item.get("error") or "no validity"),
                      "the zone asks for a new one by itself; check its log")
    if (end - now) < (end - start) * INTERMEDIATE_LEFT:
        return Result(check, False, f"expires in {_span(end - now)}" if end > now
                      else "expired", "check that the zone CP is online: it renews its "
                      "intermediate at two thirds of its lifetime")
    return None


def reports(facts: dict[str, Any]) -> Iterator[Result]:
    """An online zone that never reported cannot be judged: say so instead of passing."""
    for zone in _list(facts.get("zones")):
        if zone.get("online") and not zone.get("report"):
            yield Result(f"zone {zone.get('name')} health report", False,
                         "none received yet (a zone CP older than this check, or just "
                         "connected)", "upgrade the zone CP, or run the check again in "
                         "a minute")


def judge(facts: dict[str, Any], now: dt.datetime) -> list[Result]:
    """Every check's result, in the order they print."""
    zones = _list(facts.get("zones"))
    rules: list[Callable[[], Iterator[Result]]] = [
        lambda: (zone_online(z) for z in zones if facts.get("mode") != "standalone"),
        lambda: reports(facts),
        lambda: (zone_token(z, now) for z in zones if z.get("report")
                 and facts.get("mode") != "standalone"),
        lambda: (r for z in zones if (r := clock_skew(z)) is not None),
        lambda: ingress_checks(facts),
        lambda: egress_checks(facts),
        lambda: ca_checks(facts),
        lambda: intermediate_checks(facts, now),
        lambda: proxy_checks(facts),
    ]
    return [result for rule in rules for result in rule()]
