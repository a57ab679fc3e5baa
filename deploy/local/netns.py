"""Network namespaces through iproute2: the few operations the environment needs.

Every link is made directly inside its namespaces (``ip link add A netns X type veth peer
name B netns Y``), never in the host's, so deleting an environment's namespaces deletes
all of its links, and the host's own network is never touched. A namespace outlives
``ip netns del`` while a process still runs in it, so cleanup kills first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from deploy.local.errors import CommandFailed, Unsupported

ETC_NETNS = Path("/etc/netns")
RUN_NETNS = Path("/run/netns")


def run(argv: Sequence[str], *, timeout: float = 30.0, check: bool = True,
        env: dict[str, str] | None = None, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; ``CommandFailed`` (with its stderr) when it fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env=env, check=False, input=stdin,
                              stdin=subprocess.DEVNULL if stdin is None else None)
    except FileNotFoundError as exc:
        raise CommandFailed(argv, 127, f"{argv[0]}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(argv, -1, f"timed out after {timeout}s") from exc
    if check and done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr or done.stdout)
    return done


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(("-n", ns) if ns else ()), *args]
    return run(argv, check=check).stdout


def exec_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``ns`` (``ip netns exec`` execs it: the pid stays the same, and
    ``/etc/netns/<ns>/resolv.conf`` is mounted over ``/etc/resolv.conf`` for it)."""
    return ["ip", "netns", "exec", ns, *argv]


def run_in(ns: str, argv: Sequence[str], *, timeout: float = 30.0, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run(exec_argv(ns, argv), timeout=timeout, check=check, env=env)


def check_support(probe: str) -> None:
    """``Unsupported`` with the reason unless this process can make network namespaces."""
    if os.geteuid() != 0:
        raise Unsupported("network namespaces need root: run this as root (sudo)")
    if shutil.which("ip") is None:
        raise Unsupported("the `ip` command (Debian package iproute2) is missing")
    delete_namespace(probe)
    try:
        add_namespace(probe)
    except CommandFailed as exc:
        raise Unsupported(f"this kernel or container cannot make network namespaces: "
                          f"{exc.output.strip()}") from None
    finally:
        delete_namespace(probe)


def namespaces(prefix: str) -> list[str]:
    """The namespaces whose name starts with ``prefix``."""
    out = []
    for line in ip("netns", "list", check=False).splitlines():
        name = line.split(" ", 1)[0].strip()
        if name.startswith(prefix):
            out.append(name)
    # Left by an interrupted `ip netns add`/`del`: a mount point with no namespace listed.
    if RUN_NETNS.is_dir():
        out += [p.name for p in RUN_NETNS.iterdir()
                if p.name.startswith(prefix) and p.name not in out]
    return sorted(out)


def pids_in(ns: str) -> list[int]:
    text = ip("netns", "pids", ns, check=False)
    return [int(word) for word in text.split() if word.isdigit()]


def add_namespace(name: str) -> None:
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", ns=name)


def delete_namespace(name: str) -> None:
    ip("netns", "del", name, check=False)
    shutil.rmtree(ETC_NETNS / name, ignore_errors=True)


def add_bridge(ns: str, name: str, cidr: str | None = None) -> None:
    ip("link", "add", name, "type", "bridge", ns=ns)
    if cidr:
        ip("addr", "add", cidr, "dev", name, ns=ns)
    ip("link", "set", name, "up", ns=ns)


def add_veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair with one end in each namespace, both up."""
    ip("link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b,
       "netns", ns_b)
    ip("link", "set", name_a, "up", ns=ns_a)
    ip("link", "set", name_b, "up", ns=ns_b)


def attach(ns: str, link: str, bridge: str) -> None:
    ip("link", "set", link, "master", bridge, ns=ns)


def add_address(ns: str, link: str, cidr: str) -> None:
    ip("addr", "add", cidr, "dev", link, ns=ns)


def add_route(ns: str, *route: str) -> None:
    ip("route", "add", *route, ns=ns)


def enable_forwarding(ns: str) -> None:
    run_in(ns, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])


def write_resolv_conf(ns: str, nameservers: Sequence[str]) -> None:
    """What ``/etc/resolv.conf`` reads inside ``ns`` for processes started there."""
    directory = ETC_NETNS / ns
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"nameserver {ns_ip}" for ns_ip in nameservers]
    (directory / "resolv.conf").write_text("\n".join([*lines, "options timeout:2 attempts:2"])
                                           + "\n")


def etc_dirs(prefix: str) -> list[Path]:
    if not ETC_NETNS.is_dir():
        return []
    return sorted(p for p in ETC_NETNS.iterdir() if p.name.startswith(prefix))


def host_links(prefix: str) -> list[str]:
    """Links in the host's namespace named with ``prefix`` (the environment makes none;
    cleanup removes any that an older or interrupted run may have left)."""
    out = []
    for line in ip("-o", "link", "show", check=False).splitlines():
        parts = line.split(": ", 2)
        if len(parts) >= 2:
            name = parts[1].split("@", 1)[0]
            if name.startswith(prefix):
                out.append(name)
    return out
