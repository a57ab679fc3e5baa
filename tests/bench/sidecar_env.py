"""What the sidecar benchmark starts and reads: the references (a bare interpreter, an
Envoy with an empty config), real sidecars and a zone ingress (``gossamer proxy run`` /
``gossamer ingress run`` as processes against in-process control planes), and the
``/proc`` numbers it compares (RSS, private memory, CPU time).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from proxy.envoy_binary import envoy_binary
from tests.bench.dataplane_paths import gossamer_command, process
from tests.integration.agent_env import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")

DATAPLANE = """\
type: Dataplane
mesh: {{ mesh }}
name: {{ name }}
networking:
  address: 127.0.0.1
  inbound:
  - port: {{ inbound }}
    servicePort: {{ app }}
    tags: {gossamer.io/service: {{ service }}, gossamer.io/protocol: http}
"""
OUTBOUND = """\
  outbound:
  - port: {{ outbound }}
    tags: {gossamer.io/service: backend}
"""
EMPTY_ENVOY = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
"""


@dataclass(frozen=True)
class Memory:
    rss_kib: int
    private_kib: int  # RssAnon: what this process alone holds (shared libraries excluded)


def memory(pid: int) -> Memory:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                fields[key] = int(value.split()[0])
    return Memory(fields["VmRSS"], fields["RssAnon"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def envoy_pid(work: Path) -> int | None:
    """The Envoy an agent runs, found by its bootstrap path on the command line."""
    bootstrap = str((work / "envoy.yaml").absolute())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (cmdline and cmdline[0].endswith(b"envoy")
                and bootstrap.encode() in cmdline):
            return int(entry)
    return None


async def first_true(check: Callable[[], Awaitable[bool]], timeout: float,
                     what: str, interval: float = 0.01, since: float | None = None) -> float:
    """Seconds from ``since`` (default: now) until ``check()`` is first true, looked at
    every ``interval`` (the resolution of the start-up times)."""
    start = time.monotonic() if since is None else since
    while time.monotonic() - start < timeout:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
            if await check():
                return time.monotonic() - start
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} did not happen in {timeout:g}s")


async def get_ok(url: str) -> bool:
    async with httpx.AsyncClient(timeout=1.0) as client:
        return (await client.get(url)).status_code == 200


async def has_certificate(admin: int) -> bool:
    """Envoy's admin lists a certificate from SDS (the workload's identity)."""
    async with httpx.AsyncClient(timeout=1.0) as client:
        body = (await client.get(f"http://127.0.0.1:{admin}/certs")).json()
    return any(cert.get("cert_chain") for cert in body.get("certificates", []))


@contextlib.asynccontextmanager
async def bare_interpreter(work: Path) -> AsyncIterator[int]:
    """The reference for an agent: this Python, started and doing nothing."""
    async with process([sys.executable, "-c", "import signal; signal.pause()"],
                       work / "bare.log") as proc:
        yield proc.pid


@contextlib.asynccontextmanager
async def empty_envoy(work: Path, hot_restart: bool = True) -> AsyncIterator[int]:
    """The reference for a sidecar's Envoy: the same binary with only an admin listener
    (and, with ``hot_restart`` false, ``--disable-hot-restart``)."""
    admin = free_port()
    name = "empty-envoy" if hot_restart else "empty-envoy-no-hot-restart"
    config = work / f"{name}.yaml"
    config.write_text(EMPTY_ENVOY.format(admin=admin))
    argv = [str(envoy_binary()), "--config-path", str(config), "--concurrency", "1",
            "--log-level", "warning",
            *(["--use-dynamic-base-id"] if hot_restart else ["--disable-hot-restart"])]
    async with process(argv, work / f"{name}.log") as proc:
        await first_true(lambda: get_ok(f"http://127.0.0.1:{admin}/ready"), 30,
                         "the empty Envoy")
        yield proc.pid


@dataclass(frozen=True)
class Sidecar:
    agent: int
    work: Path
    admin: int
    outbound: int | None

    @property
    def envoy(self) -> int:
        pid = envoy_pid(self.work)
        assert pid is not None, f"no Envoy for {self.work}"
        return pid


@contextlib.asynccontextmanager
async def sidecar(directory: Path, cp_url: str, cp_ca: Path, token: Path, *, mesh: str,
                  name: str, service: str, app: int, outbound: bool = False,
                  env: dict[str, str] | None = None) -> AsyncIterator[Sidecar]:
    """``gossamer proxy run`` as a process (its own DNS port), with ``env`` added to its
    environment; SIGTERM drains it."""
    directory.mkdir(parents=True)
    dataplane = directory / "dataplane.yaml"
    dataplane.write_text(DATAPLANE + (OUTBOUND if outbound else ""))
    admin, out = free_port(), free_port() if outbound else None
    variables = {"mesh": mesh, "name": name, "service": service, "inbound": free_port(),
                 "app": app, **({"outbound": out} if out else {})}
    args = [gossamer_command(), "proxy", "run", "--dataplane", str(dataplane),
            *(a for k, v in variables.items() for a in ("--dataplane-var", f"{k}={v}")),
            "--cp", cp_url, "--token-file", str(token), "--cp-ca", str(cp_ca),
            "--work-dir", str(directory / "work"), "--admin-port", str(admin),
            "--concurrency", "1", "--drain-time", "1s"]
    async with process(args, directory / "agent.log",
                       env={"GOSSAMER_DNS_ADDR": "127.0.0.1:0", **(env or {})}) as agent:
        yield Sidecar(agent.pid, directory / "work", admin, out)


@contextlib.asynccontextmanager
async def ingress(directory: Path, cp_url: str, cp_ca: Path, token: Path, port: int
                  ) -> AsyncIterator[Sidecar]:
    """``gossamer ingress run`` as a process, listening on 127.0.0.1:``port``."""
    directory.mkdir(parents=True)
    admin = free_port()
    args = [gossamer_command(), "ingress", "run", "--cp", cp_url, "--cp-ca", str(cp_ca),
            "--token-file", str(token), "--listen", f"127.0.0.1:{port}",
            "--admin-port", str(admin), "--drain-time", "1s",
            "--work-dir", str(directory / "work")]
    async with process(args, directory / "ingress.log") as agent:
        yield Sidecar(agent.pid, directory / "work", admin, None)


def handshake_through(port: int, server_name: str) -> bool:
    """A TLS handshake through the ingress reaches a sidecar that presents a certificate."""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", server_name],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    return "-----BEGIN CERTIFICATE-----" in result.stdout


async def app_server() -> tuple[asyncio.Server, int]:
    """The workload behind the sidecars: answers every request with 200 ``ok``."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    return server, port
