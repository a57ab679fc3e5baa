"""``gossamer demo`` / ``make demo``: a cross-zone call by mesh DNS name, end to end.

Builds the demo topology (``topology.demo``: a global, zones ``east`` and ``west`` each in
its own network with a zone ingress, ``backend`` in east, ``web`` in west) with
``Environment``, runs ``curl http://backend.mesh/`` in web's namespace until the first
answer (with a deadline), prints it and the path it took (``probes.trace``: the lookup
and the connection redirected to the sidecar by the transparent proxy, as on a host
that follows the README's "Calling services by name"), then
``gossamer inspect zones``, ``gossamer inspect services`` and ``gossamer inspect meshes``
at the global (through the ``gossamer`` command, never by importing ``cli``: the commands
sit above ``deploy``, and ``gossamer demo`` imports this module). Unless
``keep``, it tears everything down; with it, it prints how to call in and how to stop.

Every failure is one ``error:`` paragraph (with where the logs are) and a non-zero exit:
2 when this machine cannot run it (not root, no network namespaces), 1 otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from deploy.local import netns, probes, status
from deploy.local.environment import Environment, default_state
from deploy.local.errors import LocalEnvError, NotReady, Unsupported
from deploy.local.topology import DEFAULT_PREFIX, demo

CALL_DEADLINE = 90.0


def say(line: str = "") -> None:
    print(line, flush=True)


def show(env: Environment, *args: str) -> None:
    say(f"\n$ gossamer {' '.join(args)}   # at the global")
    say(env.gossamer(*args).rstrip())


def first_answer(env: Environment, client: str, service: str) -> probes.Reply:
    """Call until the service answers: the zones learn of each other's ingress and
    services over the sync in the first seconds."""
    deadline = time.monotonic() + CALL_DEADLINE
    while True:
        reply = probes.call(env, client, f"http://{service}.mesh/")
        if reply.served_by:
            return reply
        if time.monotonic() > deadline:
            raise NotReady(f"curl http://{service}.mesh/ from {client} did not succeed in "
                           f"{CALL_DEADLINE:.0f}s; last: {reply.status or reply.error} "
                           f"{reply.body.strip()}")
        time.sleep(0.5)  # a poll interval; the bound is the deadline


def run(env: Environment, keep: bool) -> None:
    t = env.topology
    netns.check_support(f"{t.prefix}probe")
    say(f"Building zones {', '.join(t.zones)} in network namespaces ({t.prefix}*), "
        f"state and logs in {env.state}")
    env.up(progress=lambda line: say(f"  {line}"))
    client, service = "web-1", "backend"
    say(f"\nCalling http://{service}.mesh/ from {client} (zone {t.workload(client).zone}):")
    first_answer(env, client, service)
    tr = probes.trace(env, client, service)
    say(f"\n$ ip netns exec {t.workload_ns(client)} curl http://{service}.mesh/")
    say(tr.reply.body.rstrip() or f"(no answer: {tr.reply.status} {tr.reply.error})")
    say("\nThe path it took (from the Envoys' own counters):")
    for line in probes.describe_path(env, client, service, tr):
        say(line)
    show(env, "inspect", "zones")
    show(env, "inspect", "services")
    show(env, "inspect", "meshes")  # the CA: backend, phase, signer, roots
    if keep:
        say("\nThe environment keeps running.")
        say(status.describe(env))


def main(keep: bool = False, prefix: str = DEFAULT_PREFIX, state: Path | None = None) -> int:
    env = Environment(demo(prefix), state or default_state(prefix))
    try:
        run(env, keep)
    except Unsupported as exc:
        print(f"error: the demo cannot run on this machine: {exc}", file=sys.stderr)
        return 2
    except (LocalEnvError, KeyboardInterrupt) as exc:
        print(f"\nerror: {exc or 'interrupted'}\nlogs: {env.state / 'logs'}", file=sys.stderr)
        tear_down(env)
        return 1
    if not keep:
        tear_down(env)
    return 0


def tear_down(env: Environment) -> None:
    removed = env.down()
    if removed:
        spaces = sum(line.startswith("namespace ") for line in removed)
        say(f"\nTore the environment down ({', '.join(removed[:1])} and {spaces} "
            f"namespaces); `make demo KEEP=1` (or `gossamer demo --keep`) "
            f"leaves it running. Logs stay in {env.state / 'logs'}.")


if __name__ == "__main__":
    sys.exit(main(keep="--keep" in sys.argv[1:]))
