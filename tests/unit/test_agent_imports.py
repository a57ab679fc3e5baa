"""What the agent process may load: the sidecar started by ``gossamer proxy run`` (and
the zone ingress and egress by ``gossamer ingress run`` and ``gossamer egress run``) as
the console command starts it, run until Envoy has its certificate, stopped with SIGTERM,
and its ``sys.modules`` written at exit.
``proxy run`` replaces itself with its lean runtime (``cli.agent_runtime``, same PID), so
the modules are written by a ``sitecustomize`` that every interpreter of the test loads:
each process writes its own file, and the agent's is the one of the PID started.

A sidecar runs beside every workload, so what its agent imports is paid once per
instance of every service: the control planes' stores, HTTP API, every kind's model and
the other commands' client libraries must stay out (issue 17: they made the agent 82 MB).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sync.v1 import agent_pb2
from tests.integration.agent_env import TOKEN, FakeZoneCp, agent_files, envoy_pids, free_port
from tests.waiting import eventually

ROOT = Path(__file__).parents[2]

# Run the console command's entry point; every interpreter started with the hook's
# directory on its path writes what it imported when it exits.
LAUNCH = """\
from cli.main import main
main(prog_name="gossamer")
"""
HOOK = """\
import atexit, os, sys
if "AGENT_MODULES_OUT" in os.environ:
    out = f"{os.environ['AGENT_MODULES_OUT']}.{os.getpid()}"
    atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
"""

# Packages (with their submodules) no agent process may load.
FORBIDDEN_PACKAGES = (
    "fastapi", "starlette", "uvicorn", "httpx", "rich", "pygments", "aiosqlite", "asyncpg",
    "sqlite3", "hvac", "opentelemetry", "prometheus_client", "global_cp", "zone_cp",
    "authority", "gossamer.store", "gossamer.api", "gossamer.policy", "gossamer.resources",
    "proxy.envoy", "proxy.context", "cli.resources", "cli.client", "cli.config",
    "cli.tokens", "cli.inspect", "cli.run_global", "cli.run_zone", "cli.demo",
    "deploy",
)
# Loaded by ``proxy run`` to check its inputs (grpcio: by the control planes), never by
# the sidecar's runtime it becomes.
CHECK_ONLY = ("grpc", "pydantic", "pydantic_core", "cryptography", "jwt", "click", "cli.main",
              "cli.params", "cli.run_proxy", "gossamer.model.dataplane",
              "gossamer.model.registry", "proxy.agent.keygen",
              "yaml")  # the Dataplane file is YAML; Envoy's bootstrap is written as JSON
# The kinds' models the agents check their documents with; every other kind stays out.
MODELS = {"gossamer.model.dataplane", "gossamer.model.zoneingress", "gossamer.model.zoneegress"}
MODEL_SUPPORT = {"gossamer.model", "gossamer.model.address", "gossamer.model.base",
                 "gossamer.model.fields", "gossamer.model.kind_index", "gossamer.model.labels",
                 "gossamer.model.registry"}


def forbidden(modules: set[str]) -> list[str]:
    bad = [m for m in modules
           if any(m == p or m.startswith(p + ".") for p in FORBIDDEN_PACKAGES)]
    bad += [m for m in modules if m.startswith("gossamer.model.")
            and m not in MODELS | MODEL_SUPPORT]
    return sorted(bad)


async def run_command(tmp_path: Path, args: list[str], work: Path,
                      ready: object) -> set[str]:
    """The command's modules, after it ran until ``ready()`` and stopped on SIGTERM."""
    out = tmp_path / "modules.txt"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "AGENT_MODULES_OUT": str(out), "GOSSAMER_DNS_ADDR": "127.0.0.1:0",
           "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    with open(tmp_path / "agent.err", "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LAUNCH, *args, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env)
    try:
        await eventually(ready, timeout=60, what="the agent to run Envoy")  # type: ignore[arg-type]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, \
            (tmp_path / "agent.err").read_text()[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in envoy_pids(work):
            os.kill(pid, signal.SIGKILL)
    return set(Path(f"{out}.{proc.pid}").read_text().split())


def test_the_forbidden_list_catches_what_the_control_planes_load() -> None:
    """The check itself can fail: the modules of a control-plane command are caught."""
    modules = {"zone_cp.app", "gossamer.store.sqlite", "fastapi", "gossamer.model.meshtimeout",
               "gossamer.model.dataplane", "grpc", "proxy.agent.agent"}
    assert forbidden(modules) == ["fastapi", "gossamer.model.meshtimeout",
                                  "gossamer.store.sqlite", "zone_cp.app"]


async def test_proxy_run_loads_only_what_a_sidecar_runs(tmp_path: Path) -> None:
    cp = FakeZoneCp(tmp_path / "cp-tls")
    await cp.start()
    work = tmp_path / "work"
    args = ["proxy", "run", *agent_files(tmp_path, cp), "--cp", cp.url,
            "--admin-port", str(free_port()), "--work-dir", str(work), "--drain-time", "0s"]
    try:
        modules = await run_command(tmp_path, args, work,
                                    lambda: bool(envoy_pids(work)) and cp.reported_chains())
    finally:
        await cp.stop()
    # It ran the agent: registered, held a key, served SDS, supervised Envoy.
    assert {"proxy.agent.agent", "proxy.agent.sds_server", "grpclib",
            "cli.agent_process"} <= modules
    assert forbidden(modules) == []
    assert "gossamer.model.zoneingress" not in modules
    assert sorted(m for m in modules if any(
        m == p or m.startswith(p + ".") for p in CHECK_ONLY)) == []


class IngressCp(FakeZoneCp):
    """The fake CP, registering a ZoneIngress (a document without a mesh) too."""

    async def Session(self, request_iterator: Any, context: Any) -> Any:
        await self._check_token(context)
        first = await anext(aiter(request_iterator))
        doc = json.loads(first.register_dataplane_json)
        self.registrations.append(doc)
        yield agent_pb2.ControlPlaneMessage(registered=agent_pb2.Registered(
            name=doc["name"], zone="lab", node_id=f"ingress:{doc['name']}"))
        async for _ in request_iterator:  # held open until the agent ends it
            pass


async def test_ingress_run_loads_only_what_an_ingress_runs(tmp_path: Path) -> None:
    cp = IngressCp(tmp_path / "cp-tls")
    await cp.start()
    work, token = tmp_path / "work", tmp_path / "zone.token"
    token.write_text(TOKEN)
    args = ["ingress", "run", "--cp", cp.url, "--cp-ca", str(cp.tls.ca_file),
            "--token-file", str(token), "--listen", f"127.0.0.1:{free_port()}",
            "--admin-port", str(free_port()), "--work-dir", str(work), "--drain-time", "0s"]
    try:
        modules = await run_command(tmp_path, args, work,
                                    lambda: bool(envoy_pids(work)) and cp.registrations)
    finally:
        await cp.stop()
    assert cp.registrations[0]["type"] == "ZoneIngress"
    assert {"zone_ingress.agent", "grpclib", "cli.agent_process"} <= modules
    assert forbidden(modules) == []
    assert "gossamer.model.dataplane" not in modules
    # Checked by the command (the ZoneIngress model), not loaded by the runtime it became.
    assert sorted(m for m in modules if any(
        m == p or m.startswith(p + ".") for p in (*CHECK_ONLY, "gossamer.model.zoneingress",
                                                  "cli.run_ingress"))) == []


async def test_egress_run_loads_only_what_an_egress_runs(tmp_path: Path) -> None:
    cp = IngressCp(tmp_path / "cp-tls")  # registers any document; signs any CSR
    await cp.start()
    work, token = tmp_path / "work", tmp_path / "zone.token"
    token.write_text(TOKEN)
    args = ["egress", "run", "--cp", cp.url, "--cp-ca", str(cp.tls.ca_file),
            "--token-file", str(token), "--listen", f"127.0.0.1:{free_port()}",
            "--admin-port", str(free_port()), "--work-dir", str(work), "--drain-time", "0s"]
    try:
        modules = await run_command(tmp_path, args, work,
                                    lambda: bool(envoy_pids(work)) and cp.signed)
    finally:
        await cp.stop()
    assert cp.registrations[0]["type"] == "ZoneEgress"
    # It held a key of its own, served it over SDS and supervised Envoy.
    assert {"zone_egress.agent", "proxy.agent.sds_server", "proxy.agent.rotation",
            "grpclib", "cli.agent_process"} <= modules
    assert forbidden(modules) == []
    assert sorted(m for m in modules if any(
        m == p or m.startswith(p + ".") for p in (*CHECK_ONLY, "gossamer.model.zoneegress",
                                                  "cli.run_egress", "zone_ingress"))) == []
