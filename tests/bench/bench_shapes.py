"""Benchmark: a mesh-wide regeneration with shared shapes against whole generation.

Run ``.venv/bin/python -m tests.bench.bench_shapes`` (``--services 100 --instances 10
--outbounds 8``). The mesh is ``bench_config_gen``'s (N services of ``--instances``
Dataplanes, one inbound each, tag ``version`` v1/v2 by instance, ``--outbounds``
explicit outbounds; timeouts, retries, permissions, circuit breakers, routes), followed
by a ``MeshState`` as the zone CP does. Then one regeneration of every proxy, twice in
the same pass, per proxy, in alternating order:

- **whole** (the reference): ``generate(ctx, cache)`` with the ``PieceCache`` already
  holding every piece (what a regeneration after a mesh-wide change finds for the
  unchanged services), then encoding every resource (``zone_cp.xds_resources.encode``:
  deterministic serialization and a SHA-256 version);
- **shared**: ``shape_key(ctx)``, the class's shape from a memo (built by the class's
  first proxy: that cost is counted once per class and spread over the proxies),
  ``generate_own(ctx)`` and ``combine``; then encoding with a memo by message identity
  (``id`` held with the message, as ``zone_cp.fleet_shared`` does), so a shape's
  messages are encoded once per class and only the own part per proxy.

A class is ``shape_key`` plus what the caller must hold equal (``proxy.envoy.shapes``):
here one services mapping for the whole pass and, for the policies, the proxy's
inbound tags (the bench mesh targets services, never Dataplanes; the zone CP shares its
``match_policies`` results by such a key). Every proxy's shared result is checked byte
for byte against its whole generation before anything is timed. A third variant times
the own part through ``zone_cp.own_template`` (a class's template patched with each
proxy's address, as the zone CP's fleet does; also checked byte for byte). Times are the
process's CPU time, means per proxy; the ratios are whole / shared.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from google.protobuf.message import Message

from proxy.context import ProxyContext
from proxy.envoy import (
    PieceCache,
    ProxyResources,
    combine,
    generate,
    generate_own,
    generate_shape,
    shape_key,
)
from sync.messages import Entry
from tests.bench.bench_config_gen import mesh_state
from zone_cp.own_template import OwnTemplate, Pending, first, own_key, second
from zone_cp.xds_resources import encode, entries

T = TypeVar("T")


def timed(work: Callable[[], T], into: list[float]) -> T:
    start = time.process_time()
    out = work()
    into.append(time.process_time() - start)
    return out


def wire(resources: ProxyResources) -> list[tuple[str, str, bytes]]:
    return [(t, n, m.SerializeToString(deterministic=True)) for t, n, m in resources.items()]


def encode_all(generated: ProxyResources) -> dict[tuple[str, str], Entry]:
    return {(t, n): encode(m, t) for t, n, m in entries(generated)}


class Memo:
    """An encode memo by message identity: a shared message is encoded once."""

    def __init__(self) -> None:
        self.held: dict[int, tuple[Message, Entry]] = {}

    def encode_all(self, generated: ProxyResources) -> dict[tuple[str, str], Entry]:
        out = {}
        for t, n, m in entries(generated):
            found = self.held.get(id(m))
            if found is None or found[0] is not m:
                found = self.held[id(m)] = (m, encode(m, t))
            out[(t, n)] = found[1]
        return out


class Owns:
    """Own parts through ``zone_cp.own_template``, as ``zone_cp.fleet_shared`` makes
    them: a class's first two proxies generated (and checked), the rest patched."""

    def __init__(self) -> None:
        self.held: dict[Hashable, OwnTemplate | Pending | None] = {}

    def own(self, ctx: ProxyContext) -> ProxyResources:
        key = own_key(ctx, class_key(ctx))
        found = self.held.get(key, ())
        if isinstance(found, OwnTemplate):
            return found.instantiate(ctx.dataplane.networking.address)[0]
        if found == ():
            own, self.held[key] = first(ctx, encode)
        elif isinstance(found, Pending):
            own, self.held[key] = second(ctx, found, encode)
        else:
            own = generate_own(ctx)
        return own


def class_key(ctx: ProxyContext) -> Hashable:
    """``shape_key`` and this bench's stand-in for "policies equal": inbound tags."""
    tags = tuple(tuple(sorted(ib.tags.items())) for ib in ctx.dataplane.networking.inbound)
    return (shape_key(ctx), tags)


def regenerate(contexts: list[ProxyContext], cache: PieceCache) -> dict[str, Any]:
    """One pass over every proxy: whole and shared, alternating which goes first."""
    t: dict[str, list[float]] = defaultdict(list)
    shapes: dict[Hashable, ProxyResources] = {}
    memo = Memo()
    owns = Owns()
    for i, ctx in enumerate(contexts):
        def whole(ctx: ProxyContext = ctx) -> None:
            generated = timed(lambda: generate(ctx, cache), t["generate"])
            timed(lambda: encode_all(generated), t["encode"])

        def shared(ctx: ProxyContext = ctx) -> None:
            key = timed(lambda: class_key(ctx), t["shape_key"])
            if key not in shapes:
                shapes[key] = timed(lambda: generate_shape(ctx, cache), t["shape_once"])
            shape = shapes[key]
            own = timed(lambda: generate_own(ctx), t["own"])
            combined = timed(lambda: combine(shape, own), t["combine"])
            timed(lambda: memo.encode_all(combined), t["encode_memo"])

        def templated(ctx: ProxyContext = ctx) -> None:
            timed(lambda: owns.own(ctx), t["own_templated"])

        steps = (whole, shared, templated)
        for step in steps if i % 2 == 0 else reversed(steps):
            step()
    n = len(contexts)
    start = time.process_time()  # the key alone, without a timer call around each
    for ctx in contexts:
        hash(shape_key(ctx))
    out: dict[str, Any] = {"proxies": n, "classes": len(shapes),
                           "key_alone": (time.process_time() - start) / n}
    out.update({k: sum(v) / n for k, v in t.items()})  # per proxy, once-per-class spread
    out["own_resources"] = statistics.fmean(
        sum(len(m) for m in generate_own(c).by_type().values()) for c in contexts)
    return out


def check(contexts: list[ProxyContext], cache: PieceCache) -> int:
    """Every proxy's shared result is its whole generation, byte for byte."""
    shapes: dict[Hashable, ProxyResources] = {}
    owns = Owns()
    for ctx in contexts:
        shape = shapes.setdefault(class_key(ctx), generate_shape(ctx, cache))
        if wire(combine(shape, generate_own(ctx))) != wire(generate(ctx, cache)):
            raise SystemExit(f"{ctx.name}: the shared shape differs from its own generation")
        if wire(owns.own(ctx)) != wire(generate_own(ctx)):
            raise SystemExit(f"{ctx.name}: the patched own part differs from its generation")
    return len(shapes)


async def measure(services: int, instances: int, outbounds: int) -> dict[str, Any]:
    state = await mesh_state(services, instances, outbounds)
    contexts = [state.context_for(dp) for dp in state.of_kind("Dataplane", "default")]
    cache = PieceCache()
    check(contexts, cache)  # also fills the cache: every piece is there for both passes
    regenerate(contexts[:20], cache)  # first-use costs out of the way
    gc.collect()
    row = regenerate(contexts, cache)
    row["services"] = services
    return row


def report(rows: list[dict[str, Any]]) -> str:
    us = 1e6
    lines = ["| services | proxies | classes | generate µs | encode µs | class key µs "
             "(shape_key + hash alone) | shape, once per class µs | own + combine µs | "
             "encode, memo µs | generate: whole / shared | encode: whole / memo | "
             "both: whole / shared | all proxies, CPU s: whole / shared | "
             "own, templated µs (own: generated / templated) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        shared_gen = r["shape_key"] + r["shape_once"] + r["own"] + r["combine"]
        whole = r["generate"] + r["encode"]
        shared = shared_gen + r["encode_memo"]
        lines.append(
            f"| {r['services']} | {r['proxies']} | {r['classes']} | "
            f"{r['generate'] * us:,.0f} | {r['encode'] * us:,.0f} | "
            f"{r['shape_key'] * us:,.1f} ({r['key_alone'] * us:,.1f}) | "
            f"{r['shape_once'] * us:,.0f} | "
            f"{(r['own'] + r['combine']) * us:,.0f} | {r['encode_memo'] * us:,.0f} | "
            f"{r['generate'] / shared_gen:.1f} | {r['encode'] / r['encode_memo']:.1f} | "
            f"{whole / shared:.1f} | "
            f"{whole * r['proxies']:.2f} / {shared * r['proxies']:.2f} | "
            f"{r['own_templated'] * us:,.0f} ({r['own'] / r['own_templated']:.1f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, nargs="+", default=[100])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--outbounds", type=int, default=8)
    a = parser.parse_args()
    rows = [asyncio.run(measure(n, a.instances, a.outbounds)) for n in a.services]
    print(f"\n{a.instances} Dataplanes per service, {a.outbounds} outbounds each; "
          "CPU time per proxy (once-per-class costs spread over the proxies)\n")
    print(report(rows))


if __name__ == "__main__":
    main()
