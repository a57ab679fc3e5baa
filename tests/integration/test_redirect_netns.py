"""``gossamer proxy redirect install|uninstall`` in real network namespaces, with real nft.

Each test makes two fresh namespaces joined by a veth pair: the workload's (``w``, where
the rules go, its default route through the peer) and a peer (``p``, a host outside).
Stand-in listeners (``redirect_probe.py``) play Envoy's capture listeners, the resolver
and the peer's services, and report what reached them; the clients are real ``curl`` and
``dig``, or the probe's client. The sidecar's user is ``nobody`` here (``--exclude-uid
65534``), its processes run with ``setpriv``. Skipped loudly without root, network
namespaces or ``nft``.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from proxy.redirect import apply
from proxy.redirect.ruleset import Plan, plan, render
from proxy.redirect.settings import RedirectSettings
from proxy.redirect.system import Nft, ensure_system_user, run, uid_of
from tests.unit.redirect_strategies import SETTINGS
from tests.waiting import eventually_sync

PROBE = Path(__file__).with_name("redirect_probe.py")
GOSSAMER = Path(sys.executable).with_name("gossamer")
SIDECAR_UID = 65534  # nobody: stands in for the sidecar's user
AS_SIDECAR = ("setpriv", f"--reuid={SIDECAR_UID}", f"--regid={SIDECAR_UID}", "--clear-groups")
NFT = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert not check or done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done


@dataclass(frozen=True)
class Pair:
    w: str      # the workload's namespace
    p: str      # the peer's
    w_ip: str
    p_ip: str

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.w, *argv, check=check)

    def gossamer(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(GOSSAMER), "proxy", "redirect", *args, check=check)

    def ruleset(self) -> str:
        return self.run("nft", "-a", "list", "ruleset").stdout


@pytest.fixture
def pair() -> Iterator[Pair]:
    if os.geteuid() != 0 or NFT is None or shutil.which("ip") is None:
        pytest.skip("SKIPPING the redirect tests in network namespaces: they need root, "
                    "iproute2 and nft (Debian nftables, installed by `make`)")
    tag = secrets.token_hex(3)
    w, p = f"rdw-{tag}", f"rdp-{tag}"
    made = sh("ip", "netns", "add", w, check=False)
    if made.returncode != 0:
        pytest.skip(f"SKIPPING the redirect tests: cannot create a network namespace: "
                    f"{made.stderr.strip()}")
    octet = secrets.randbelow(250) + 1
    w_ip, p_ip = f"10.215.{octet}.2", f"10.215.{octet}.1"
    try:
        sh("ip", "netns", "add", p)
        sh("ip", "link", "add", "w0", "netns", w, "type", "veth", "peer", "name", "p0",
           "netns", p)
        for ns, link, ip in ((w, "w0", w_ip), (p, "p0", p_ip)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", link)
            sh("ip", "-n", ns, "link", "set", link, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", w, "route", "add", "default", "via", p_ip)
        yield Pair(w, p, w_ip, p_ip)
    finally:
        sh("ip", "netns", "del", w, check=False)
        sh("ip", "netns", "del", p, check=False)


@dataclass
class Probe:
    """One ``redirect_probe.py`` process in a namespace and the events it reported."""

    ns: str
    args: tuple[str, ...]
    as_sidecar: bool = False
    events: list[dict[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        who = AS_SIDECAR if self.as_sidecar else ()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *who, sys.executable, "-I", str(PROBE),
             *self.args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        eventually_sync(lambda: self.seen("ready") or self._exited(), 10,
                        f"probe {self.args} to listen", interval=0.02)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def _exited(self) -> None:
        if self.proc.poll() is not None:
            assert self.proc.stderr is not None
            pytest.fail(f"probe {self.args} exited: {self.proc.stderr.read()}")

    def seen(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.events if e["event"] == kind]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def probes() -> Iterator[list[Probe]]:
    started: list[Probe] = []
    yield started
    for probe in started:
        probe.stop()


def start(probes: list[Probe], ns: str, *args: str, as_sidecar: bool = False) -> Probe:
    probe = Probe(ns, args, as_sidecar)
    probes.append(probe)
    return probe


def install(pair: Pair, *flags: str) -> str:
    done = pair.gossamer("install", "--exclude-uid", str(SIDECAR_UID), *flags)
    return done.stdout


def curl(pair: Pair, url: str, *, as_sidecar: bool = False) -> str:
    who = AS_SIDECAR if as_sidecar else ()
    return pair.run(*who, "curl", "-s", "--http0.9", "-m", "5", url, check=False).stdout


# -- the table: exactly what was asked, idempotent, removed without a trace -----------------

def test_install_writes_the_rendered_table_once_and_uninstall_restores_the_ruleset(
        pair: Pair) -> None:
    # Someone else's table, which neither command may touch.
    pair.run("nft", "add", "table", "inet", "theirs")
    pair.run("nft", "add", "chain", "inet", "theirs", "input",
             "{ type filter hook input priority 0; policy accept; }")
    before = pair.ruleset()
    asked = RedirectSettings(exclude_uids=(SIDECAR_UID,), exclude_inbound_ports=(22,))

    dry = pair.gossamer("install", "--dry-run", "--exclude-uid", str(SIDECAR_UID),
                        "--exclude-inbound-ports", "22")
    assert dry.stdout == render(asked)
    assert pair.ruleset() == before, "--dry-run changed the ruleset"

    assert "installed table inet gossamer" in install(pair, "--exclude-inbound-ports", "22")
    assert pair.run("nft", "list", "table", "inet", "gossamer").stdout == render(asked)
    installed = pair.ruleset()  # with handles: a rewrite would renumber them

    again = install(pair, "--exclude-inbound-ports", "22")
    assert "nothing changed" in again
    assert pair.ruleset() == installed

    assert "replaced" in install(pair)  # other flags: the table is replaced, not appended
    assert pair.run("nft", "list", "table", "inet", "gossamer").stdout == \
        render(RedirectSettings(exclude_uids=(SIDECAR_UID,)))

    assert pair.gossamer("uninstall", "--dry-run").stdout == "delete table inet gossamer\n"
    assert "removed table inet gossamer" in pair.gossamer("uninstall").stdout
    assert pair.ruleset() == before
    assert "not installed" in pair.gossamer("uninstall").stdout
    assert pair.ruleset() == before


# -- what the rules do to real traffic -------------------------------------------------------

def test_outbound_tcp_lands_on_15001_with_its_original_destination(
        pair: Pair, probes: list[Probe]) -> None:
    capture = start(probes, pair.w, "tcp", "127.0.0.1", "15001")
    peer = start(probes, pair.p, "tcp", "0.0.0.0", "8080")
    install(pair)

    assert curl(pair, "http://198.51.100.7:8080/") == "hello from 15001\n"
    assert curl(pair, f"http://{pair.p_ip}:8080/") == "hello from 15001\n"
    # The probe records a connection after it has answered: wait for the second record.
    wanted = ["198.51.100.7:8080", f"{pair.p_ip}:8080"]
    eventually_sync(lambda: len(capture.seen("tcp")) >= 2 or None, timeout=10,
                    what="the capture to record both connections")
    assert [e["orig"] for e in capture.seen("tcp")] == wanted
    assert peer.seen("tcp") == []

    # The sidecar's user reaches the peer itself, and loopback stays local.
    assert curl(pair, f"http://{pair.p_ip}:8080/", as_sidecar=True) == "hello from 8080\n"
    local = start(probes, pair.w, "tcp", "127.0.0.1", "8081")
    assert curl(pair, "http://127.0.0.1:8081/") == "hello from 8081\n"
    assert len(capture.seen("tcp")) == 2 and len(peer.seen("tcp")) == 1
    assert len(local.seen("tcp")) == 1


def test_excluded_outbound_ports_and_cidrs_pass_untouched(
        pair: Pair, probes: list[Probe]) -> None:
    capture = start(probes, pair.w, "tcp", "127.0.0.1", "15001")
    start(probes, pair.p, "tcp", "0.0.0.0", "8080")
    start(probes, pair.p, "tcp", "0.0.0.0", "5432")
    install(pair, "--exclude-outbound-ports", "5432")
    assert curl(pair, f"http://{pair.p_ip}:5432/") == "hello from 5432\n"
    assert curl(pair, f"http://{pair.p_ip}:8080/") == "hello from 15001\n"

    install(pair, "--exclude-outbound-cidrs", f"{pair.p_ip}/32")
    assert curl(pair, f"http://{pair.p_ip}:8080/") == "hello from 8080\n"
    assert len(capture.seen("tcp")) == 1


def dig(pair: Pair, *args: str, as_sidecar: bool = False) -> str:
    who = AS_SIDECAR if as_sidecar else ()
    return pair.run(*who, "dig", "+time=3", "+tries=1", *args, "example.org").stdout


def test_dns_to_any_server_lands_on_the_resolver_over_udp_and_tcp(
        pair: Pair, probes: list[Probe]) -> None:
    resolver = start(probes, pair.w, "dns", "127.0.0.1", "15053")
    upstream = start(probes, pair.p, "dns", "0.0.0.0", "53")
    install(pair)

    assert "status: NOERROR" in dig(pair, "@192.0.2.53")
    assert "status: NOERROR" in dig(pair, "+tcp", "@192.0.2.53")
    assert "status: NOERROR" in dig(pair, "@127.0.0.53")
    assert [e["proto"] for e in resolver.seen("dns")] == ["udp", "tcp", "udp"]
    assert resolver.seen("dns")[1]["orig"] == "192.0.2.53:53"

    # The resolver's own forwarded queries (the sidecar's user) reach the real server.
    assert "status: NOERROR" in dig(pair, f"@{pair.p_ip}", as_sidecar=True)
    assert len(upstream.seen("dns")) == 1 and len(resolver.seen("dns")) == 3


def test_no_dns_leaves_dns_alone(pair: Pair, probes: list[Probe]) -> None:
    resolver = start(probes, pair.w, "dns", "127.0.0.1", "15053")
    upstream = start(probes, pair.p, "dns", "0.0.0.0", "53")
    install(pair, "--no-dns")
    assert "status: NOERROR" in dig(pair, f"@{pair.p_ip}")
    assert len(upstream.seen("dns")) == 1 and resolver.seen("dns") == []


def client(pair: Pair, ns: str, host: str, port: int, count: int,
           *, as_sidecar: bool = False) -> dict[str, int]:
    who = AS_SIDECAR if as_sidecar else ()
    done = sh("ip", "netns", "exec", ns, *who, sys.executable, "-I", str(PROBE),
              "client", host, str(port), str(count))
    answers: dict[str, int] = json.loads(done.stdout)["answers"]
    return answers


def test_inbound_tcp_to_the_namespace_lands_on_15006_except_excluded_ports(
        pair: Pair, probes: list[Probe]) -> None:
    capture = start(probes, pair.w, "tcp", "0.0.0.0", "15006")
    direct = start(probes, pair.w, "tcp", "0.0.0.0", "9100")
    install(pair, "--exclude-inbound-ports", "9100")

    assert client(pair, pair.p, pair.w_ip, 9000, 1) == {"hello from 15006": 1}
    assert capture.seen("tcp")[0]["orig"] == f"{pair.w_ip}:9000"
    assert client(pair, pair.p, pair.w_ip, 9100, 1) == {"hello from 9100": 1}
    assert len(capture.seen("tcp")) == 1 and len(direct.seen("tcp")) == 1

    install(pair, "--no-inbound")
    assert client(pair, pair.p, pair.w_ip, 15006, 1) == {"hello from 15006": 1}
    assert capture.seen("tcp")[1]["orig"] == f"{pair.w_ip}:15006"  # not redirected: itself
    assert "error" in next(iter(client(pair, pair.p, pair.w_ip, 9000, 1)))


def test_no_connection_of_the_sidecar_user_loops_under_load(
        pair: Pair, probes: list[Probe]) -> None:
    # An Envoy stand-in: as the sidecar's user, it connects to each connection's
    # original destination. Were its own connections captured, each would come back to
    # it (a loop): more connections than the client made, and none reaching the peer.
    sidecar = start(probes, pair.w, "forward", "127.0.0.1", "15001", as_sidecar=True)
    peer = start(probes, pair.p, "tcp", "0.0.0.0", "8080")
    install(pair)
    count = 200
    assert client(pair, pair.w, pair.p_ip, 8080, count) == {"hello from 8080": count}
    assert len(sidecar.seen("forward")) == count
    assert sidecar.seen("forward-error") == []
    assert len(peer.seen("tcp")) == count
    assert {str(e["peer"]).split(":")[0] for e in peer.seen("tcp")} == {pair.w_ip}


# -- errors ------------------------------------------------------------------------------------

def test_without_root_install_is_one_error_line(pair: Pair) -> None:
    done = pair.run(*AS_SIDECAR, str(GOSSAMER), "proxy", "redirect", "install",
                    "--exclude-uid", "0", check=False)
    assert done.returncode == 1, done
    assert done.stderr.startswith("error: gossamer proxy redirect install needs root"), \
        done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert pair.run("nft", "list", "ruleset").stdout == ""


# -- the kernel gives back exactly what was rendered, whatever the options -------------------

@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(asked=SETTINGS)
def test_the_kernel_lists_exactly_the_rendered_table_for_any_options(
        pair: Pair, asked: RedirectSettings) -> None:
    nft = Nft(lambda argv, stdin: run(["ip", "netns", "exec", pair.w, *argv], stdin))
    apply.install(asked, nft)
    listed = pair.run("nft", "list", "table", "inet", "gossamer").stdout
    assert listed == render(asked)
    assert plan(listed, asked) is Plan.KEEP
    assert apply.install(asked, nft) is Plan.KEEP


# -- the sidecar's user ----------------------------------------------------------------------

def test_the_sidecar_user_is_created_once_as_a_system_user() -> None:
    if os.geteuid() != 0 or shutil.which("useradd", path="/usr/sbin:/sbin") is None:
        pytest.skip("SKIPPING the system user test: it needs root and useradd")
    name = f"gsmt{secrets.token_hex(3)}"
    try:
        uid, created = ensure_system_user(name)
        assert created and uid_of(name) == uid
        assert uid < 1000, "not a system user"  # SYS_UID_MAX of Debian's login.defs
        assert pwd.getpwnam(name).pw_shell == "/usr/sbin/nologin"
        assert ensure_system_user(name) == (uid, False)
    finally:
        sh("userdel", name, check=False)
    assert uid_of(name) is None
