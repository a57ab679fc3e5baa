"""``python -m deploy.local up|down|status``: the demo environment without the demo.

``up`` builds the demo's topology (``backend`` in east, ``web`` in west) and leaves it
running; ``status`` lists its namespaces and processes; ``down`` removes everything with
the prefix, also after a crash. ``--prefix`` and ``--state-dir`` select another
environment (the e2e tests use their own prefixes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.local import netns, processes, status
from deploy.local.environment import Environment, default_state
from deploy.local.errors import LocalEnvError, Unsupported
from deploy.local.topology import DEFAULT_PREFIX, demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--prefix", default=DEFAULT_PREFIX,
                        help=f"name prefix of everything made (default {DEFAULT_PREFIX})")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="logs, data and pid files (default /tmp/gossamer-local-<prefix>)")
    args = parser.parse_args(argv)
    state = args.state_dir or default_state(args.prefix)
    env = Environment(demo(args.prefix), state)
    try:
        if args.command == "up":
            env.up()
            print(status.describe(env))
        elif args.command == "down":
            if not netns.namespaces(args.prefix) and not processes.marked(args.prefix):
                print(f"nothing with prefix {args.prefix!r} is running")
            removed = env.down()
            for line in removed:
                print(f"removed {line}")
        else:
            print(status.report(args.prefix, state))
    except Unsupported as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LocalEnvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.command == "up":
            print(f"logs are in {state / 'logs'}; clean up with: "
                  f"{sys.executable} -m deploy.local down --prefix {args.prefix}",
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
