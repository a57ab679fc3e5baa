"""Sidecar footprint: what one ``gossamer proxy run`` (agent + Envoy) and one
``gossamer ingress run`` cost on a host, against references measured in the same run.

    .venv/bin/python -m tests.bench.bench_sidecar      # --rounds 3 --idle 60 --names 1000

A standalone zone CP in this process (SQLite) holds ``--names`` Dataplanes in each of two
meshes, so every sidecar's DNS table has that many names: ``default`` (24 h
certificates) and ``rotating`` (certificates of ``--cert-life`` seconds, renewed at two
thirds). One ``backend`` sidecar serves an app in this process; ``--rounds`` ``web``
sidecars are started one after the other and each times, from its spawn, its
certificate in Envoy (``/certs``) and its first request through its outbound to backend
answered (looked at every 10 ms). Then, for ``--idle`` seconds with nothing sent: CPU
time and, at the end, RSS of the last web sidecar (24 h certificate) and of a sidecar
in ``rotating`` (several renewals in the window), beside a bare interpreter and an Envoy
with an empty config (admin only) as the references. Then a global and a federated zone
``east`` with a backend sidecar and a zone ingress: time from ``ingress run`` to the
first TLS connection passed through to the backend, and the same idle numbers.

    .venv/bin/python -m tests.bench.bench_sidecar --envoy-variants --names 1000

measures instead what each of Envoy's lean settings (``proxy.agent.bootstrap.EnvoyLimits``)
does to its memory: side by side, against the same zone CP, ``web`` sidecars whose
agents differ only in the ``GOSSAMER_ENVOY_*`` overrides (the defaults; every stat; no
overload manager; neither), each after one request through its outbound and the idle
window, beside the empty-config Envoy with and without hot restart. Sidecars get their
VIP listeners only where the VIP range is routed to ``lo``: run it in a network namespace
of its own that has the route (``unshare -n``; docs/benchmarks.md has the command).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from authority.token_authority import TokenAuthority
from gossamer.errors import NotFound
from gossamer.model.tokentrust import trust_name
from gossamer.resources import ResourceManager
from gossamer.settings import ZoneSettings
from gossamer.tokens import DATAPLANE
from tests.bench import sidecar_env as env
from tests.cluster import start_global, start_zone, zone_token
from tests.integration.agent_env import free_port
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

ROTATING = "rotating"
# The agents' environments compared by --envoy-variants: each turns lean settings off.
ALL_STATS = {"GOSSAMER_ENVOY_STATS": "all"}
NO_OVERLOAD = {"GOSSAMER_ENVOY_MAX_HEAP": "off", "GOSSAMER_ENVOY_MAX_CONNECTIONS": "off"}
VARIANTS = {"lean (defaults)": {}, "every stat": ALL_STATS, "no overload manager": NO_OVERLOAD,
            "neither": {**ALL_STATS, **NO_OVERLOAD}}


def allow_all(mesh: str) -> dict[str, object]:
    return {"type": "MeshTrafficPermission", "name": "allow-all", "mesh": mesh, "spec": {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}}


def names(mesh: str, count: int) -> list[dict[str, object]]:
    """``count`` Dataplanes of distinct services: that many names in the DNS table."""
    return [{"type": "Dataplane", "mesh": mesh, "name": f"svc-{i:04d}", "networking": {
        "address": f"10.{i // 250}.{i % 250}.1", "inbound": [{"port": 8080, "tags": {
            "gossamer.io/service": f"svc-{i:04d}"}}]}} for i in range(count)]


async def fill(manager: ResourceManager, cp: ZoneControlPlane, count: int,
               cert_life: int) -> None:
    await manager.apply_batch([
        {"type": "Mesh", "name": ROTATING, "mtls": {"enabledBackend": "ca-1", "backends": [
            {"name": "ca-1", "type": "builtin",
             "dpCert": {"rotation": {"expiration": f"{cert_life}s"}}}]}},
        allow_all(ROTATING)])
    for mesh in ("default", ROTATING):
        docs = names(mesh, count)
        for i in range(0, count, 250):
            await manager.apply_batch(docs[i:i + 250])
        last = f"svc-{count - 1:04d}"
        await eventually(lambda m=mesh, n=last: cp.state.get("VirtualIP", n, m) is not None,
                         timeout=120, what=f"{count} VIPs in {mesh}")


async def token(manager: ResourceManager, mesh: str, service: str, path: Path) -> Path:
    path.write_text((await TokenAuthority(manager, DATAPLANE, mesh).issue(service, 3600))[0])
    return path


@dataclass
class Idle:
    """One process's numbers over the idle window."""

    cpu_s: float
    rss_kib: int
    private_kib: int


async def idle(pids: dict[str, int], seconds: float) -> dict[str, Idle]:
    before = {k: env.cpu_seconds(p) for k, p in pids.items()}
    await asyncio.sleep(seconds)  # the measured window itself, not a wait for a condition
    out = {}
    for k, p in pids.items():
        mem = env.memory(p)
        out[k] = Idle(env.cpu_seconds(p) - before[k], mem.rss_kib, mem.private_kib)
    return out


async def start_times(work: Path, cp: ZoneControlPlane, cp_url: str, manager: ResourceManager,
                      app: int, rounds: int) -> tuple[list[float], list[float]]:
    certs, firsts = [], []
    for i in range(rounds):
        tok = await token(manager, "default", "web", work / f"web-{i}.token")
        start = time.monotonic()
        async with env.sidecar(work / f"web-{i}", cp_url, cp.tls.ca_file, tok,
                               mesh="default", name=f"web-{i}", service="web", app=app,
                               outbound=True) as web:
            # Both clocks start at the spawn, looked at side by side.
            cert = asyncio.ensure_future(env.first_true(
                lambda: env.has_certificate(web.admin), 30, "web's certificate", since=start))
            firsts.append(await env.first_true(
                lambda: env.get_ok(f"http://127.0.0.1:{web.outbound}/"), 30,
                "web's first request", since=start))
            certs.append(await cert)
    return certs, firsts


async def mesh_run(work: Path, args: argparse.Namespace) -> dict[str, object]:
    cp = ZoneControlPlane(ZoneSettings(zone="lab", data_dir=work / "zone", store="sqlite",
                                       api_addr="127.0.0.1:0",
                                       xds_addr=f"127.0.0.1:{free_port()}"))
    await cp.start()
    try:
        assert cp.xds is not None
        manager, cp_url = cp.manager, f"https://127.0.0.1:{cp.xds.port}"
        await fill(manager, cp, args.names, args.cert_life)
        server, app = await env.app_server()
        ca = cp.tls.ca_file
        async with env.bare_interpreter(work) as bare, env.empty_envoy(work) as empty, \
                env.sidecar(work / "backend", cp_url, ca,
                            await token(manager, "default", "backend", work / "b.token"),
                            mesh="default", name="backend-1", service="backend",
                            app=app) as backend:
            await env.first_true(lambda: env.has_certificate(backend.admin), 60, "backend")
            certs, firsts = await start_times(work, cp, cp_url, manager, app, args.rounds)
            tok = await token(manager, "default", "web", work / "idle.token")
            rtok = await token(manager, ROTATING, "rot", work / "rot.token")
            async with env.sidecar(work / "web", cp_url, ca, tok, mesh="default",
                                   name="web", service="web", app=app, outbound=True) as web, \
                    env.sidecar(work / "rot", cp_url, ca, rtok, mesh=ROTATING, name="rot",
                                service="rot", app=app) as rot:
                await env.first_true(lambda: env.get_ok(f"http://127.0.0.1:{web.outbound}/"),
                                     30, "web")
                await env.first_true(lambda: env.has_certificate(rot.admin), 30, "rot")
                numbers = await idle({"bare": bare, "empty envoy": empty,
                                      "web agent": web.agent, "web envoy": web.envoy,
                                      "rot agent": rot.agent, "rot envoy": rot.envoy},
                                     args.idle)
        server.close()
        return {"certs": certs, "firsts": firsts, "idle": numbers}
    finally:
        await cp.stop()


async def ingress_run(work: Path, args: argparse.Namespace) -> dict[str, object]:
    glob = await start_global(work / "global")
    east = await start_zone(glob, "east", work / "east")
    try:
        assert east.xds is not None
        cp_url, ca = f"https://127.0.0.1:{east.xds.port}", east.tls.ca_file
        global_manager = ResourceManager(glob.store) if glob.store else None
        assert global_manager is not None

        async def trusted() -> bool:
            try:
                await east.manager.get("TokenTrust", trust_name(DATAPLANE, "default"))
                await east.manager.get("TokenTrust", "zone")
            except NotFound:
                return False
            return True

        await eventually(trusted, timeout=60, what="the global's TokenTrusts in east")
        server, app = await env.app_server()
        ztoken, _ = await zone_token(glob, "east", work / "zone.token")
        async with env.bare_interpreter(work) as bare, env.empty_envoy(work) as empty, \
                env.sidecar(work / "east-backend", cp_url, ca,
                            await token(global_manager, "default", "backend",
                                        work / "eb.token"),
                            mesh="default", name="backend-1", service="backend",
                            app=app) as backend:
            await env.first_true(lambda: env.has_certificate(backend.admin), 60, "backend")
            port = free_port()
            start = time.monotonic()
            async with env.ingress(work / "ingress", cp_url, ca, ztoken, port) as ing:
                first = await env.first_true(
                    lambda: asyncio.to_thread(env.handshake_through, port,
                                              "backend.default.mesh"), 60,
                    "a connection through the ingress", since=start)
                numbers = await idle({"bare": bare, "empty envoy": empty,
                                      "ingress agent": ing.agent,
                                      "ingress envoy": ing.envoy}, args.idle)
        server.close()
        return {"first": first, "idle": numbers}
    finally:
        await east.stop()
        await glob.stop()


async def resource_counts(admin: int) -> tuple[int, int]:
    """(active listeners, active clusters) of the Envoy with this admin port."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{admin}/stats", params={
            "filter": r"^(listener_manager\.total_listeners_active"
                      r"|cluster_manager\.active_clusters)$"})).text
    values = dict(line.split(": ") for line in text.splitlines())
    return (int(values["listener_manager.total_listeners_active"]),
            int(values["cluster_manager.active_clusters"]))


async def stat_count(admin: int) -> int:
    """How many stats the Envoy with this admin port has (counters, gauges, histograms)."""
    async with httpx.AsyncClient(timeout=30) as client:
        text = (await client.get(f"http://127.0.0.1:{admin}/stats")).text
    if dump := os.environ.get("BENCH_SIDECAR_STATS_DIR"):  # to see which families remain
        Path(dump, f"stats-{admin}.txt").write_text(text)
    return len(text.splitlines())


async def settled(admins: list[int]) -> tuple[int, int]:
    """Every Envoy holds as many listeners and clusters as the others, unchanged over two
    looks a second apart (the VIP listeners arrive after the first request can pass)."""
    last: list[tuple[int, int]] = []

    async def same() -> bool:
        nonlocal last
        counts = [await resource_counts(a) for a in admins]
        done = len(set(counts)) == 1 and counts == last
        last = counts
        return done

    await eventually(same, timeout=300, interval=1.0, what="the variants' resources")
    return last[0]


async def variants_run(work: Path, args: argparse.Namespace) -> dict[str, object]:
    cp = ZoneControlPlane(ZoneSettings(zone="lab", data_dir=work / "zone", store="sqlite",
                                       api_addr="127.0.0.1:0",
                                       xds_addr=f"127.0.0.1:{free_port()}"))
    await cp.start()
    try:
        assert cp.xds is not None
        manager, cp_url, ca = cp.manager, f"https://127.0.0.1:{cp.xds.port}", cp.tls.ca_file
        await fill(manager, cp, args.names, args.cert_life)
        server, app = await env.app_server()
        async with contextlib.AsyncExitStack() as stack:
            pids = {"empty envoy": await stack.enter_async_context(env.empty_envoy(work)),
                    "empty envoy, no hot restart": await stack.enter_async_context(
                        env.empty_envoy(work, hot_restart=False))}
            backend = await stack.enter_async_context(env.sidecar(
                work / "backend", cp_url, ca,
                await token(manager, "default", "backend", work / "b.token"),
                mesh="default", name="backend-1", service="backend", app=app))
            await env.first_true(lambda: env.has_certificate(backend.admin), 60, "backend")
            sidecars = {}
            for i, (label, environment) in enumerate(VARIANTS.items()):
                tok = await token(manager, "default", "web", work / f"v{i}.token")
                sidecars[label] = await stack.enter_async_context(env.sidecar(
                    work / f"v{i}", cp_url, ca, tok, mesh="default", name=f"web-v{i}",
                    service="web", app=app, outbound=True, env=environment))
            for label, web in sidecars.items():
                await env.first_true(lambda w=web: env.get_ok(  # type: ignore[misc]
                    f"http://127.0.0.1:{w.outbound}/"), 120, label)
            counts = await settled([w.admin for w in sidecars.values()])
            pids.update({label: web.envoy for label, web in sidecars.items()})
            numbers = await idle(pids, args.idle)
            stats = {label: await stat_count(web.admin) for label, web in sidecars.items()}
        server.close()
        return {"idle": numbers, "counts": counts, "stats": stats}
    finally:
        await cp.stop()


def report_variants(run: dict[str, object], args: argparse.Namespace) -> None:
    numbers, counts = run["idle"], run["counts"]
    assert isinstance(numbers, dict) and isinstance(counts, tuple)
    listeners, clusters = counts
    print(f"\n--names {args.names}: each web Envoy holds {listeners} listeners and "
          f"{clusters} clusters\n")
    stats = run["stats"]
    assert isinstance(stats, dict)
    print("| Envoy | stats | RSS MiB | private MiB | private / empty | private / neither |")
    print("|---|---:|---:|---:|---:|---:|")
    empty, neither = numbers["empty envoy"], numbers["neither"]
    for name, n in numbers.items():
        print(f"| {name} | {stats.get(name, '')} | {n.rss_kib / 1024:.1f} | "
              f"{n.private_kib / 1024:.1f} | {n.private_kib / empty.private_kib:.2f} | "
              f"{n.private_kib / neither.private_kib:.2f} |")


def report(mesh: dict[str, object], ing: dict[str, object], args: argparse.Namespace) -> None:
    certs, firsts = mesh["certs"], mesh["firsts"]
    assert isinstance(certs, list) and isinstance(firsts, list)
    print(f"\nstart to certificate in Envoy, s: {[f'{c:.2f}' for c in certs]} "
          f"median {statistics.median(certs):.2f}")
    print(f"start to first request served, s: {[f'{f:.2f}' for f in firsts]} "
          f"median {statistics.median(firsts):.2f}")
    print(f"ingress start to first connection passed through, s: {ing['first']:.2f}\n")
    print(f"| process | RSS MiB | private MiB | CPU over {args.idle:g} s idle, ms | CPU % |")
    print("|---|---:|---:|---:|---:|")
    for run in (mesh, ing):
        numbers = run["idle"]
        assert isinstance(numbers, dict)
        for name, n in numbers.items():
            print(f"| {name} | {n.rss_kib / 1024:.1f} | {n.private_kib / 1024:.1f} | "
                  f"{n.cpu_s * 1000:.0f} | {100 * n.cpu_s / args.idle:.3f} |")
    print("\n| ratio | RSS | private |\n|---|---:|---:|")
    for run, pairs in ((mesh, (("web agent", "bare"), ("rot agent", "bare"),
                              ("web envoy", "empty envoy"), ("rot envoy", "empty envoy"))),
                       (ing, (("ingress agent", "bare"), ("ingress envoy", "empty envoy")))):
        numbers = run["idle"]
        assert isinstance(numbers, dict)
        for a, b in pairs:
            print(f"| {a} / {b} | {numbers[a].rss_kib / numbers[b].rss_kib:.2f} | "
                  f"{numbers[a].private_kib / numbers[b].private_kib:.2f} |")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sidecar-") as tmp:
        work = Path(tmp)
        if args.envoy_variants:
            report_variants(await variants_run(work, args), args)
            return
        (work / "mesh").mkdir()
        (work / "ing").mkdir()
        mesh = await mesh_run(work / "mesh", args)
        ing = await ingress_run(work / "ing", args)
    report(mesh, ing, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--cert-life", type=int, default=15)
    parser.add_argument("--envoy-variants", action="store_true",
                        help="compare Envoy's memory with each lean setting turned off")
    asyncio.run(main(parser.parse_args()))
