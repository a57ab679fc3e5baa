"""Finding what holds a control plane's event loop: a stall tracer for benchmarks.

A turn of the asyncio loop (one ``Handle._run``: a callback or one step of a task) that
takes longer than ``THRESHOLD`` is a *stall*: every request the API has in flight waits
for it. ``install`` wraps ``Handle._run`` to time each turn (wall and the loop thread's
own CPU, so that a turn held by another thread's GIL or by the machine's preemption is
told apart from one that computes) and samples the loop thread's stack every ``SAMPLE``
seconds while a turn runs past half the threshold: an interval timer's ``SIGALRM``,
whose handler Python runs in the main thread with the frame it interrupted (a sampling
thread would have to win the GIL from the very thread it samples, and rarely does).
Each stall is one JSON line (its wall and CPU ms, the handle and, for a task, its
coroutine and where it waits next, the sampled stacks, innermost project frame first)
in ``DIR/<pid>.jsonl``.

It is switched on in a process started with ``GOSSAMER_STALL_TRACE=DIR`` and the folder
``tests/bench/stall_hook`` (whose ``sitecustomize`` calls ``install``) on
``PYTHONPATH``: ``bench_policies --stall-trace DIR`` does that for the control planes it
starts. ``python -m tests.bench.stall_trace DIR`` sums the stalls by the project frame
that was running (the most frequent sample of each stall).
"""

from __future__ import annotations

import asyncio.events
import atexit
import collections
import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

THRESHOLD = 0.05
SAMPLE = 0.005
PROJECT = ("/gossamer/", "/zone_cp/", "/global_cp/", "/sync/", "/proxy/", "/authority/",
           "/dns/", "/zone_ingress/", "/cli/")


class _Tracer:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.loop_thread = threading.get_ident()
        self.started = 0.0  # perf_counter at the start of the running turn, 0 when idle
        self.turn = 0
        self.samples: list[str] = []
        self.gc_started = 0.0

    def run(self, handle: asyncio.events.Handle, original: Any) -> None:
        if threading.get_ident() != self.loop_thread:
            original(handle)
            return
        self.turn += 1
        self.samples = []
        self.started = time.perf_counter()
        cpu = time.thread_time()
        try:
            original(handle)
        finally:
            wall = time.perf_counter() - self.started
            cpu = time.thread_time() - cpu
            self.started = 0.0
            samples = self.samples
            if wall >= THRESHOLD:
                self._record(handle, wall, cpu, samples)

    def _record(self, handle: asyncio.events.Handle, wall: float, cpu: float,
                samples: list[str]) -> None:
        line = {"wall_ms": round(wall * 1000, 1), "cpu_ms": round(cpu * 1000, 1),
                "handle": repr(handle)[:300], "task": _task(handle), "samples": samples,
                "at": time.time()}
        with open(self.out, "a") as f:
            f.write(json.dumps(line) + "\n")

    def collected(self, phase: str, info: dict[str, Any]) -> None:
        """The cyclic GC's own pauses, as samples of the turn they fall in (and as lines
        of their own past the threshold): a full collection walks every object."""
        if phase == "start":
            self.gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self.gc_started
        if took >= THRESHOLD / 5:
            self.samples.append(f"gc generation {info['generation']}: {took * 1000:.0f} ms")

    def sample(self, signum: int, frame: Any) -> None:
        started = self.started
        if started and frame is not None and time.perf_counter() - started >= THRESHOLD / 2:
            try:
                self.samples.append(_where(frame))
            except Exception as exc:  # a tracer's bug must not end the traced process
                self.samples.append(f"(no sample: {exc!r})")


def _task(handle: asyncio.events.Handle) -> str:
    """For a task's step: its coroutine and where it waits now (just after the stall)."""
    task = getattr(getattr(handle, "_callback", None), "__self__", None)
    if not isinstance(task, asyncio.Task):
        return ""
    stack = task.get_stack(limit=1)
    here = _where(stack[-1]) if stack else "done"
    return f"{task.get_coro().__qualname__}: now at {here}"


def _where(frame: Any) -> str:
    """The three innermost frames, then up to six project frames outward from there."""
    # No source lines: reading them (linecache, tokenize) took longer than the stall.
    frames = list(traceback.StackSummary.extract(traceback.walk_stack(frame),
                                                 lookup_lines=False))
    inner = frames[:3]
    outer = [f for f in frames[3:] if any(p in f.filename for p in PROJECT)][:6]
    return " < ".join(f"{_short(f.filename)}:{f.lineno} {f.name}"
                      for f in [*inner, *outer])


def _short(path: str) -> str:
    for p in PROJECT:
        if p in path:
            return p.strip("/") + "/" + path.split(p, 1)[1]
    return "/".join(path.rsplit("/", 2)[-2:])


def install(folder: str) -> None:
    """Trace this process's loop thread (the thread that calls this: the main thread)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tracer = _Tracer(out / f"{os.getpid()}.jsonl")
    (out / f"{os.getpid()}.argv").write_text(" ".join(sys.argv))
    original = asyncio.events.Handle._run

    def run(self: asyncio.events.Handle) -> None:
        tracer.run(self, original)

    asyncio.events.Handle._run = run  # type: ignore[method-assign]
    gc.callbacks.append(tracer.collected)
    signal.signal(signal.SIGALRM, tracer.sample)
    signal.setitimer(signal.ITIMER_REAL, SAMPLE, SAMPLE)
    # Timers outlive the interpreter's handlers at exit: stop it first.
    atexit.register(signal.setitimer, signal.ITIMER_REAL, 0)


def report(folder: Path, top: int = 25) -> None:
    """Stalls by the project frame most often sampled in each, for every traced process."""
    for trace in sorted(folder.glob("*.jsonl")):
        argv = (trace.with_suffix(".argv").read_text()
                if trace.with_suffix(".argv").exists() else "")
        stalls = [json.loads(line) for line in trace.read_text().splitlines()]
        if not stalls:
            continue
        sites: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        for s in stalls:
            common = collections.Counter(s["samples"]).most_common(1)
            site = common[0][0] if common else (s.get("task") or s["handle"])[:200]
            sites[site].append((s["wall_ms"], s["cpu_ms"]))
        print(f"== {trace.name} {argv[:120]}: {len(stalls)} stalls, "
              f"max {max(s['wall_ms'] for s in stalls):.0f} ms")
        ranked = sorted(sites.items(), key=lambda kv: -max(w for w, _ in kv[1]))
        for site, hits in ranked[:top]:
            worst = max(hits)
            print(f"  {len(hits):4d}x max {worst[0]:7.1f} ms (cpu {worst[1]:6.1f}) {site}")


if __name__ == "__main__":
    report(Path(sys.argv[1]))
