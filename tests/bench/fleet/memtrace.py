"""Where a zone CP's Python memory per sidecar goes, from a ``tracemalloc`` snapshot.

``bench_fleet --trace-memory DIR`` starts tracing in each zone CP once it is up (before
any sidecar connects) and writes a snapshot once every sidecar is connected; whatever
the snapshot holds was allocated since and is still alive. Each block is charged to
the innermost frame of its traceback that is the project's own code (``zone_cp/``,
``sync/``, ``proxy/``, ``gossamer/``...), with the innermost frame overall beside it, so
that "gRPC's objects made in a servicer" and "a pydantic model decoded by the state" are
told apart; the lines are in KiB per sidecar.

``python -m tests.bench.fleet.memtrace SNAPSHOT SIDECARS [--top N]`` prints the same
breakdown for a snapshot kept earlier.
"""

from __future__ import annotations

import argparse
import tracemalloc
from collections import Counter
from pathlib import Path

PROJECT = (
    "/zone_cp/",
    "/sync/",
    "/proxy/",
    "/gossamer/",
    "/global_cp/",
    "/authority/",
    "/dns/",
    "/cli/",
)


def _short(filename: str) -> str:
    for marker in (*PROJECT, "/site-packages/", "/lib/python3"):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at + 1 :] if marker in PROJECT else filename[at + len(marker) :]
    return filename


def site(trace: tracemalloc.Trace) -> str:
    """``project frame  <  innermost frame`` of one block's traceback."""
    frames = list(trace.traceback)  # most recent call last
    inner = frames[-1]
    own = next(
        (
            f
            for f in reversed(frames)
            if any(p in f.filename for p in PROJECT) and "/tests/" not in f.filename
        ),
        None,
    )
    where = f"{_short(inner.filename)}:{inner.lineno}"
    if own is None or own is inner:
        return where
    return f"{_short(own.filename)}:{own.lineno} < {where}"


def breakdown(path: Path, sidecars: int, top: int = 40) -> list[str]:
    """The snapshot's blocks grouped by ``site``, largest first, in KiB per sidecar."""
    snapshot = tracemalloc.Snapshot.load(str(path))
    sizes: Counter[str] = Counter()
    for trace in snapshot.traces:
        sizes[site(trace)] += trace.size
    total = sum(sizes.values())
    lines = [f"traced {total / 1024 / sidecars:.1f} KiB per sidecar ({sidecars} sidecars)"]
    for where, size in sizes.most_common(top):
        lines.append(f"{size / 1024 / sidecars:7.2f}  {where}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("sidecars", type=int)
    parser.add_argument("--top", type=int, default=40)
    a = parser.parse_args()
    print("\n".join(breakdown(a.snapshot, a.sidecars, a.top)))


if __name__ == "__main__":
    main()
