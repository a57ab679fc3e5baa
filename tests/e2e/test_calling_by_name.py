"""The README's "Calling services by name", exactly as written, on fresh hosts.

Each host of the section (``GLOBAL_IP``, ``EAST_CP_IP``, ``WEST_CP_IP``, ``BACKEND_IP``,
``DB_IP``, ``WEB_IP``) is a network namespace of its own on one bridge, with a directory
of its own (its cwd and ``HOME``) and a ``/etc/resolv.conf`` naming the "internet's"
DNS (``deploy.local.upstream_dns``, in the global's namespace), as a real host's would.
Nothing else is prepared: no ``deploy.local`` environment, no route or resolv.conf
pointing at a sidecar, no ``--tls-host``, no ``--work-dir``. The blocks are read from
README.md (``readme_steps``) and each runs in bash in its host's namespace and
directory, the placeholders filled in and its ``scp`` lines done as copies between the
hosts' directories; the test waits for the servers a block starts before the next.

Then the section's last block, on web's host in west: ``curl http://backend.mesh/``
answers from backend in east (through east's ingress, whose Envoy counts it), ``nc`` to
``db.mesh:5432`` (db runs only in east) talks with db on its own port, and ``dig
example.org`` to the server in resolv.conf is answered through the sidecar: an nftables
counter in web's namespace sees the query leave as the sidecar's user, and none leave
as root, who ran dig.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.local import netns, network, processes
from deploy.local.probes import upstream_counts
from deploy.local.upstream_dns import EXAMPLE_ORG
from tests.e2e.readme_steps import PLACEHOLDERS, Step, steps
from tests.e2e.support import check_machine, prefix, reap_orphans
from tests.waiting import eventually_sync

REPO = Path(__file__).resolve().parents[2]
SUBNET = "10.60.0"
HOSTS = {name: f"{SUBNET}.{10 + i}" for i, name in enumerate(PLACEHOLDERS)}
READY = {"global": "http://127.0.0.1:5681/readyz", "zone": "http://127.0.0.1:5681/readyz",
         "ingress": "http://127.0.0.1:9901/ready", "proxy": "http://127.0.0.1:9901/ready"}
EXPECTED = {"curl": "backend in east", "nc": "db in east", "dig": EXAMPLE_ORG}
PROBE_TABLE = "gsmprobe"


@dataclass
class Hosts:
    prefix: str
    root: Path  # one directory per host under it, readable by the sidecar user
    env: dict[str, str]

    def ns(self, host: str) -> str:
        return f"{self.prefix}{host.removesuffix('_IP').lower().replace('_', '-')}"

    def dir(self, host: str) -> Path:
        return self.root / host.removesuffix("_IP").lower()

    def run(self, host: str, argv: list[str], timeout: float = 30.0
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv], text=True,
                              capture_output=True, cwd=self.dir(host), timeout=timeout,
                              env={**self.env, "HOME": str(self.dir(host))}, check=False)

    def ready(self, host: str, url: str) -> bool:
        return self.run(host, ["curl", "-sf", "-m", "2", "-o", "/dev/null", url]).returncode == 0


def build(hosts: Hosts) -> None:
    """The bare network: one namespace per host on one bridge, with the default route and
    resolv.conf a host has (the "internet", its DNS included, is on the global's side)."""
    lan = f"{hosts.prefix}lan"
    netns.add_namespace(lan)
    netns.add_bridge(lan, "lan")
    for host, ip in HOSTS.items():
        ns = hosts.ns(host)
        netns.add_namespace(ns)
        netns.add_veth(ns, "eth0", lan, f"h-{host.removesuffix('_IP').lower()[:10]}")
        netns.attach(lan, f"h-{host.removesuffix('_IP').lower()[:10]}", "lan")
        netns.add_address(ns, "eth0", f"{ip}/24")
        if host != "GLOBAL_IP":  # a host's default route; the "internet" is the global's side
            netns.add_route(ns, "default", "via", HOSTS["GLOBAL_IP"])
        netns.write_resolv_conf(ns, [HOSTS["GLOBAL_IP"]])
        hosts.dir(host).mkdir(mode=0o755)


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    check_machine()
    if shutil.which("nft") is None or shutil.which("nc") is None:
        pytest.fail("this test needs nft and nc: run ./scripts/install-debian-packages")
    reap_orphans()
    pre = prefix("n")
    root = Path(tempfile.mkdtemp(prefix="gossamer-by-name-"))
    root.chmod(0o755)  # the sidecars run as the gossamer user and read their files here
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSAMER_")}
    env.update({processes.MARK: pre, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}",
                "PYTHONPATH": str(REPO)})
    h = Hosts(pre, root, env)
    try:
        build(h)
        log = open(root / "upstream-dns.log", "w")  # noqa: SIM115 - the process holds it
        subprocess.Popen(["ip", "netns", "exec", h.ns("GLOBAL_IP"), sys.executable, "-m",
                          "deploy.local.upstream_dns", "--listen", f"{HOSTS['GLOBAL_IP']}:53"],
                         stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                         start_new_session=True)
        yield h
    finally:
        processes.kill_all(pre, None, netns.namespaces(pre))
        network.clean(pre)
        shutil.rmtree(root, ignore_errors=True)


def copy(hosts: Hosts, step: Step) -> None:
    here = hosts.dir(step.host)
    for c in step.copies():
        source = hosts.dir(c.host) / c.path
        target = here / (source.name if c.dest == "." else c.dest)
        shutil.copyfile(source, target)  # scp makes it with the umask's mode, as this does


def run_step(hosts: Hosts, step: Step, n: int) -> None:
    copy(hosts, step)
    log = hosts.dir(step.host) / f"step-{n}.log"
    with open(log, "w") as out:
        done = subprocess.run(
            ["ip", "netns", "exec", hosts.ns(step.host), "bash", "-euo", "pipefail", "-c",
             step.script(HOSTS)], stdout=out, stderr=subprocess.STDOUT, cwd=hosts.dir(step.host),
            env={**hosts.env, "HOME": str(hosts.dir(step.host))}, timeout=60, check=False)
    assert done.returncode == 0, f"step {n} on {step.host} failed:\n{log.read_text()}"
    for server in step.servers():
        url = READY[server]
        eventually_sync(functools.partial(hosts.ready, step.host, url), timeout=60,
                        what=f"step {n}: {server} on {step.host} ready; its output:\n"
                             f"{log.read_text()[-3000:]}")


def add_probe(hosts: Hosts) -> None:
    """Count DNS packets leaving web's host for the upstream, by who sends them."""
    uid = pwd.getpwnam("gossamer").pw_uid
    rules = "\n".join(
        f'    meta skuid {u} ip daddr {HOSTS["GLOBAL_IP"]} meta l4proto {{ tcp, udp }} '
        f'th dport 53 counter comment "{who}"' for u, who in ((uid, "sidecar"), (0, "root")))
    text = (f"table inet {PROBE_TABLE} {{\n  chain out {{\n"
            f"    type filter hook output priority 0; policy accept;\n{rules}\n  }}\n}}\n")
    done = subprocess.run(["ip", "netns", "exec", hosts.ns("WEB_IP"), "nft", "-f", "-"],
                          input=text, text=True, capture_output=True, check=False, timeout=10)
    assert done.returncode == 0, done.stderr


def dns_sent(hosts: Hosts) -> dict[str, int]:
    out = hosts.run("WEB_IP", ["nft", "-j", "list", "table", "inet", PROBE_TABLE]).stdout
    counts = {}
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule:
            packets = [e["counter"]["packets"] for e in rule["expr"] if "counter" in e]
            counts[rule["comment"]] = packets[0]
    return counts


def call(hosts: Hosts, line: str) -> str:
    """The command's output once it succeeds with the expected answer (else an error
    with what it said, which ``eventually_sync`` reports at its deadline)."""
    done = hosts.run("WEB_IP", ["bash", "-c", line], timeout=20)
    program = line.split("|")[-1].split()[0]
    out = done.stdout.strip()
    assert done.returncode == 0 and out == EXPECTED[program], \
        f"exit {done.returncode}: {out[-500:]!r} {done.stderr.strip()[-500:]!r}"
    return out


def ingress_carried(hosts: Hosts) -> bool:
    """East's ingress passed a connection to backend's sidecar."""
    clusters = hosts.run("EAST_CP_IP", ["curl", "-s", "http://127.0.0.1:9901/clusters"
                                        "?format=json"]).stdout
    backend = f"{HOSTS['BACKEND_IP']}:10080"
    return any(addr == backend and total > 0
               for (_, addr), (total, _) in upstream_counts(clusters).items())


def test_the_readme_section_works_on_fresh_hosts(hosts: Hosts) -> None:
    all_steps = steps((REPO / "README.md").read_text())
    *setup, calls = all_steps
    assert calls.host == "WEB_IP" and not calls.servers()
    assert [line.split("|")[-1].split()[0] for line in calls.lines] == list(EXPECTED)
    for n, step in enumerate(setup, 1):
        run_step(hosts, step, n)
    add_probe(hosts)
    curl, nc, dig = calls.lines
    assert eventually_sync(lambda: call(hosts, curl), timeout=60, what=curl)
    assert ingress_carried(hosts)
    assert eventually_sync(lambda: call(hosts, nc), timeout=60, what=nc)
    db_log = "".join(p.read_text() for p in hosts.dir("DB_IP").glob("step-*.log"))
    assert "hello" in db_log.splitlines()
    before = dns_sent(hosts)
    assert eventually_sync(lambda: call(hosts, dig), timeout=30, what=dig)
    after = dns_sent(hosts)
    assert after["sidecar"] > before["sidecar"], (before, after)
    assert after["root"] == 0, after
