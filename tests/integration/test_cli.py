"""The ``gossamer`` CLI against real control-plane processes over real HTTP.

``gossamer global run`` (and ``gossamer zone run``) are started as subprocesses of the
installed console script on free ports with a temporary ``--data-dir`` and the SQLite
store; a fixture waits for ``/readyz`` with a deadline, prints the process's log when a
test fails and terminates it afterwards. The CLI is driven two ways: the real console
script as a subprocess (``gossamer(...)``: what an operator runs, exit codes and stdout
and stderr as a shell sees them) and click's ``CliRunner`` in this process (``cli(...)``:
the same commands, faster, and with a transport that counts requests where a test needs
to see the paging).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from cli.main import main
from cli.state import Runtime
from gossamer.model.registry import REGISTRY, parse_document
from gossamer.pki.certs import new_root_ca
from tests.waiting import eventually_sync, ready

GOSSAMER = Path(sys.executable).parent / "gossamer"
READY_DEADLINE = 30.0
CLI_TIMEOUT = 120.0
MESH = "kinds"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(config: Path) -> dict[str, str]:
    """This process's environment without any GOSSAMER_* the developer may have set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSAMER_")}
    env["GOSSAMER_CONFIG"] = str(config)
    return env


@dataclass
class Proc:
    """One control-plane process: its command line, log file and API address."""

    args: list[str]
    log_path: Path
    api: str
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen([str(GOSSAMER), *self.args], stdout=log,
                                          stderr=subprocess.STDOUT, env=self.env)
        self.wait_ready()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self) -> None:
        assert self.popen is not None
        ready(self.popen, self.api, self.log_path, READY_DEADLINE)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; the exit code."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise


def global_proc(data_dir: Path, port: int, env: dict[str, str]) -> Proc:
    args = ["global", "run", "--data-dir", str(data_dir), "--api-addr", f"127.0.0.1:{port}",
            "--sync-addr", f"127.0.0.1:{_free_port()}", "--store", "sqlite"]
    return Proc(args, data_dir.parent / f"{data_dir.name}.log", f"http://127.0.0.1:{port}", env)


@dataclass
class Session:
    """The module's global CP and the CLI configured to talk to it."""

    proc: Proc
    tmp: Path
    env: dict[str, str]

    @property
    def token_file(self) -> Path:
        return self.tmp / "global" / "admin-token"

    def run(self, *args: str, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The real console script, as a shell would run it."""
        return subprocess.run([str(GOSSAMER), *args], input=input, capture_output=True,
                              text=True, env=env or self.env, timeout=CLI_TIMEOUT, check=False)

    def cli(self, *args: str, transport: httpx.BaseTransport | None = None) -> Result:
        """The same command in-process (click's CliRunner), over real HTTP."""
        runtime = Runtime(transport=transport, env=self.env)
        return CliRunner().invoke(main, list(args), obj=runtime)

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    tmp = tmp_path_factory.mktemp("cli")
    env = _clean_env(tmp / "config" / "config.yaml")
    proc = global_proc(tmp / "global", _free_port(), env)
    try:
        proc.start()
        s = Session(proc, tmp, env)
        added = s.run("config", "control-planes", "add", "--name", "test", "--address",
                      proc.api, "--token-file", str(s.token_file))
        assert added.returncode == 0, added.stderr
        yield s
    finally:
        proc.stop()


@pytest.fixture
def cp(session: Session) -> Iterator[Session]:
    """The shared session; the global's log is printed (and shown) if the test fails."""
    yield session
    print(f"--- log of {session.proc.args[:2]} ---\n{session.proc.log()}")


def _ok(result: subprocess.CompletedProcess[str] | Result) -> str:
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else (
        result.exit_code)
    assert code == 0, f"exit {code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return str(result.stdout)


def _one_line_error(result: subprocess.CompletedProcess[str] | Result, code: int) -> str:
    actual = result.returncode if isinstance(result, subprocess.CompletedProcess) else (
        result.exit_code)
    assert actual == code, f"exit {actual}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# --- one realistic document of every kind --------------------------------------------------

# A real CA: a provided backend's material is checked when it is applied.
CORP_CA = new_root_ca("Corp CA", dt.datetime.now(dt.UTC), dt.timedelta(days=365))
PEM = base64.b64encode(CORP_CA.cert_pem())

EVERY_KIND = f"""\
type: Mesh
name: {MESH}
labels: {{team: platform}}
mtls:
  enabledBackend: ca-1
  mode: permissive
  backends:
  - name: ca-1
    type: builtin
    dpCert: {{rotation: {{expiration: 12h}}}}
    conf: {{caCert: {{keyType: ecdsa-p384, expiration: 43800h}}}}
  - name: corp-ca
    type: provided
    conf:
      cert: {{secretRef: corp-ca-cert}}
      key: {{secretRef: corp-ca-key}}
---
type: Secret
name: corp-ca-cert
mesh: {MESH}
data: {PEM.decode()}
---
type: GlobalSecret
name: corp-ca-key
data: {base64.b64encode(CORP_CA.key_pem()).decode()}
---
type: GlobalSecret
name: vault-approle
labels: {{purpose: vault}}
data: {base64.b64encode(b"s.0123456789abcdef").decode()}
---
type: Zone
name: us-east-1
enabled: false
---
type: ZoneIngress
name: us-east-1-ingress
zone: us-east-1
networking:
  address: 10.0.1.10
  port: 10001
  advertisedAddress: ingress.us-east-1.example.com
  advertisedPort: 443
availableServices:
- mesh: {MESH}
  tags: {{gossamer.io/service: backend, version: v2}}
  instances: 3
---
type: VirtualIP
name: web
mesh: {MESH}
labels: {{gossamer.io/service: web}}
ip: 240.0.0.7
---
type: Dataplane
name: web-7d9f
mesh: {MESH}
labels: {{app: web}}
networking:
  address: 10.0.0.5
  inbound:
  - port: 10010
    servicePort: 8080
    tags: {{gossamer.io/service: web, gossamer.io/protocol: http, version: "1"}}
  outbound:
  - port: 10020
    tags: {{gossamer.io/service: backend}}
  admin: {{port: 9901}}
---
type: MeshTrafficPermission
name: backend-from-web
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: backend}}
  from:
  - targetRef: {{kind: MeshService, name: web}}
    default: {{action: Allow}}
  - targetRef: {{kind: MeshSubset, tags: {{env: dev}}}}
    default: {{action: Deny}}
---
type: MeshTimeout
name: backend-timeouts
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: web}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      connectionTimeout: 2s
      idleTimeout: 1h
      http: {{requestTimeout: 15s, streamIdleTimeout: 30m}}
---
type: MeshRetry
name: backend-retries
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      tcp: {{maxConnectAttempt: 3}}
      http:
        numRetries: 5
        perTryTimeout: 250ms
        backOff: {{baseInterval: 25ms, maxInterval: 1s}}
        retryOn: [5xx, reset, connect-failure]
---
type: MeshCircuitBreaker
name: backend-breaker
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      connectionLimits: {{maxConnections: 1024, maxPendingRequests: 128}}
      outlierDetection:
        interval: 5s
        baseEjectionTime: 30s
        maxEjectionPercent: 20
        detectors:
          totalFailures: {{consecutive: 10}}
---
type: MeshHealthCheck
name: backend-health
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      interval: 10s
      timeout: 2s
      unhealthyThreshold: 3
      healthyThreshold: 1
      http: {{path: /healthz, expectedStatuses: [200]}}
---
type: MeshLoadBalancingStrategy
name: backend-lb
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      loadBalancer: {{type: LeastRequest, leastRequest: {{choiceCount: 4}}}}
      localityAwareness:
        crossZone:
          failover:
          - from: {{zones: [us-east-1]}}
            to: {{type: Only, zones: [us-east-2]}}
          - to: {{type: Any}}
---
type: MeshHTTPRoute
name: backend-canary
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: web}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    rules:
    - matches:
      - path: {{type: PathPrefix, value: /api}}
        headers: [{{type: Exact, name: x-canary, value: "true"}}]
      default:
        backendRefs:
        - {{kind: MeshServiceSubset, name: backend, tags: {{version: v2}}, weight: 90}}
        - {{kind: MeshService, name: backend, weight: 10}}
---
type: MeshTCPRoute
name: redis-split
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: web}}
  to:
  - targetRef: {{kind: MeshService, name: redis}}
    rules:
    - default:
        backendRefs:
        - {{kind: MeshService, name: redis, weight: 80}}
        - {{kind: MeshService, name: redis-next, weight: 20}}
---
type: MeshRateLimit
name: public-api-limit
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: backend}}
  from:
  - targetRef: {{kind: Mesh}}
    default:
      local:
        http:
          requestRate: {{num: 100, interval: 1s}}
          onRateLimit: {{status: 429}}
---
type: MeshFaultInjection
name: backend-chaos
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: backend}}
  from:
  - targetRef: {{kind: MeshService, name: web}}
    default:
      http:
      - abort: {{httpStatus: 503, percentage: "2.5"}}
      - delay: {{value: 250ms, percentage: 10}}
---
type: MeshTrace
name: tracing
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  default:
    backends:
    - type: Zipkin
      zipkin: {{url: "http://jaeger.observability:9411/api/v2/spans"}}
    sampling: {{overall: 80}}
---
type: MeshAccessLog
name: access-logs
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  from:
  - targetRef: {{kind: Mesh}}
    default:
      backends:
      - file:
          path: /dev/stdout
          format: {{type: Plain, plain: "[%START_TIME%] %RESPONSE_CODE%"}}
---
type: MeshMetric
name: metrics
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  default:
    backends:
    - type: Prometheus
      prometheus: {{port: 5670, path: /metrics}}
"""


def _docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(EVERY_KIND) if d]


def _get_args(doc: dict[str, Any]) -> list[str]:
    desc = REGISTRY.get(doc["type"])
    return ["get", desc.noun, doc["name"], *(["-m", doc["mesh"]] if desc.mesh_scoped else [])]


def test_the_fixture_covers_every_kind() -> None:
    # System kinds (the CA's state) are written by the control planes only.
    assert sorted({d["type"] for d in _docs()}) == sorted(d.name for d in REGISTRY
                                                        if not d.system)


def test_apply_every_kind_then_get_each_back_and_apply_that_unchanged(cp: Session) -> None:
    source = cp.write("every-kind.yaml", EVERY_KIND)
    out = _ok(cp.run("apply", "-f", str(source)))
    expected = [f"{REGISTRY.get(d['type']).noun}/{d['name']} created" for d in _docs()]
    assert out.splitlines() == expected

    fetched = []
    for doc in _docs():
        got = yaml.safe_load(_ok(cp.cli(*_get_args(doc), "-o", "yaml")))
        want, have = parse_document(doc), parse_document(got)
        assert have.spec == want.spec, doc["type"]
        assert (have.name, have.mesh, dict(have.labels)) == (want.name, want.mesh,
                                                             dict(want.labels))
        assert got["version"] == 1
        fetched.append(got)

    # What `get -o yaml` prints applies back as it is, and changes nothing.
    echo = cp.write("echo.yaml", yaml.safe_dump_all(fetched, sort_keys=False))
    out = _ok(cp.run("apply", "-f", str(echo)))
    assert out.splitlines() == [line.replace("created", "unchanged") for line in expected]

    # So does a list printed as one stream, piped to `apply -f -`.
    stream = _ok(cp.run("get", "meshtimeouts", "-m", MESH, "-o", "yaml"))
    assert _ok(cp.run("apply", "-f", "-", input=stream)) == (
        "meshtimeout/backend-timeouts unchanged\n")


def test_an_invalid_file_reports_every_field_and_stores_nothing(cp: Session) -> None:
    source = cp.write("invalid.yaml", """\
type: MeshTimeout
name: would-be-fine
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
---
type: MeshTimeout
name: bad-duration
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: soon}}}]
---
type: MeshRetry
name: Bad_Name
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {http: {numRetries: -1}}}]
""")
    result = cp.run("apply", "-f", str(source))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{source}#doc2: spec.to[0].default.http.requestTimeout: expected a duration" in (
        result.stderr)
    assert f"{source}#doc3: name: expected lower-case letters" in result.stderr
    assert f"{source}#doc3: spec.to[0].default.http.numRetries" in result.stderr
    assert result.stdout == ""
    _one_line_error(cp.cli("get", "meshtimeout", "would-be-fine"), 1)


def test_a_batch_the_server_refuses_stores_nothing(cp: Session) -> None:
    # Valid document by document, so it reaches the server, which finds the missing mesh.
    source = cp.write("missing-mesh.yaml", """\
type: MeshTimeout
name: first-of-batch
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
---
type: MeshTimeout
name: second-of-batch
mesh: no-such-mesh
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
""")
    result = cp.cli("apply", "-f", str(source))
    assert result.exit_code == 1, result.output
    assert "nothing was applied" in result.stderr
    assert f"{source}#doc2: mesh" in result.stderr, result.stderr
    _one_line_error(cp.cli("get", "meshtimeout", "first-of-batch"), 1)


def test_dry_run_stores_nothing(cp: Session) -> None:
    source = cp.write("dry.yaml", """\
type: MeshTimeout
name: only-validated
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
""")
    assert _ok(cp.run("apply", "--dry-run", "-f", str(source))) == (
        "meshtimeout/only-validated valid (dry run)\n")
    line = _one_line_error(cp.run("get", "meshtimeout", "only-validated"), 1)
    assert "not found" in line


def test_a_wrong_token_file_is_one_line_and_exit_1(cp: Session) -> None:
    wrong = cp.write("wrong-token", "not-the-admin-token\n")
    _ok(cp.run("config", "control-planes", "add", "--name", "wrong", "--address", cp.proc.api,
               "--token-file", str(wrong)))
    line = _one_line_error(cp.run("--context", "wrong", "get", "meshes"), 1)
    assert "admin token" in line
    line = _one_line_error(cp.run("--context", "wrong", "token", "zone", "--zone", "east"), 1)
    assert "admin token" in line


def test_delete(cp: Session) -> None:
    source = cp.write("doomed.yaml", """\
type: MeshTimeout
name: doomed
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
""")
    _ok(cp.cli("apply", "-f", str(source)))
    assert _ok(cp.run("delete", "mt", "doomed")) == "meshtimeout/doomed deleted\n"
    assert "not found" in _one_line_error(cp.cli("get", "meshtimeout", "doomed"), 1)
    assert "not found" in _one_line_error(cp.cli("delete", "meshtimeout", "doomed"), 1)


class CountingTransport(httpx.HTTPTransport):
    """The real network, remembering each request's path and query."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[httpx.URL] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.url)
        return super().handle_request(request)


def test_get_follows_pages_across_more_than_500_items(cp: Session) -> None:
    count = 523
    docs = [{"type": "Mesh", "name": "paging"}] + [
        {"type": "MeshTimeout", "name": f"t-{i:04d}", "mesh": "paging",
         "spec": {"targetRef": {"kind": "Mesh"},
                  "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": f"{i}s"}}]}}
        for i in range(count)]
    source = cp.write("many.yaml", yaml.safe_dump_all(docs))
    assert _ok(cp.cli("apply", "-f", str(source))).count(" created\n") == count + 1

    transport = CountingTransport()
    listed = json.loads(_ok(cp.cli("get", "meshtimeouts", "-m", "paging", "-o", "json",
                                   transport=transport)))
    names = [item["name"] for item in listed["items"]]
    assert sorted(names) == [f"t-{i:04d}" for i in range(count)]
    pages = [u for u in transport.seen if u.path == "/meshes/paging/meshtimeouts"]
    assert len(pages) >= 2 and "offset" in pages[-1].params

    table = _ok(cp.run("get", "meshtimeouts", "-m", "paging")).splitlines()
    assert table[0].split() == ["NAME", "MESH", "TARGETREF", "AGE"]
    assert len(table) == count + 1


def _jwt_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = token.split(".")
    assert len(parts) == 3 and all(parts), token

    def decode(part: str) -> dict[str, Any]:
        return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))

    return decode(parts[0]), decode(parts[1])


def test_zone_token_is_a_jwt_on_stdout_and_can_be_revoked(cp: Session) -> None:
    result = cp.run("token", "zone", "--zone", "east", "--scope", "cp", "--valid-for", "2h")
    token = _ok(result)
    assert token.endswith("\n") and token.count("\n") == 1  # `> east.token` holds only it
    header, claims = _jwt_claims(token.strip())
    assert header["alg"] == "EdDSA"
    assert (claims["sub"], claims["kind"], claims["scope"]) == ("east", "zone", ["cp"])
    assert claims["exp"] - claims["iat"] == 7200
    assert f"id {claims['jti']}" in result.stderr

    assert _ok(cp.run("token", "revoke", claims["jti"])) == (
        f"revoked zone token {claims['jti']}\n")

    rotated = re.match(r"added zone token signing key (\w+):",
                       _ok(cp.cli("token", "rotate-signing-key")))
    assert rotated is not None
    kid = rotated[1]
    header, _ = _jwt_claims(_ok(cp.cli("token", "zone", "--zone", "east")).strip())
    assert header["kid"] == kid


def test_dataplane_token_and_its_revocation(cp: Session) -> None:
    result = cp.cli("token", "dataplane", "--mesh", "default", "--service", "web")
    _, claims = _jwt_claims(_ok(result).strip())
    assert (claims["sub"], claims["kind"], claims["mesh"]) == ("web", "dataplane", "default")
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert f"gossamer token revoke {claims['jti']} --dataplane --mesh default" in result.stderr
    assert _ok(cp.cli("token", "revoke", claims["jti"], "--dataplane", "--mesh", "default")) == (
        f"revoked dataplane token (mesh default) {claims['jti']}\n")
    line = _one_line_error(cp.cli("token", "dataplane", "--mesh", "nowhere", "--service", "x"), 1)
    assert "nowhere" in line


@pytest.mark.parametrize(("args", "message"), [
    (["zone", "--zone", "east", "--valid-for", "soon"], 'expected a duration like "5s"'),
    (["zone", "--zone", "east", "--valid-for", "500ms"], "shorter than 1s"),
    (["zone", "--zone", "east", "--valid-for", "100000h"], "longer than ten years"),
    (["zone", "--zone", "East"], "lower-case"),
    (["zone", "--zone", "east", "--scope", "admin"], "'admin' is not one of"),
    (["revoke", "abc", "--mesh", "default"], "only with --dataplane"),
])
def test_token_flags_are_checked_before_anything_is_sent(tmp_path: Path, args: list[str],
                                                         message: str) -> None:
    # No control plane is configured: a usage error must come before any attempt to reach one.
    runtime = Runtime(env={"GOSSAMER_CONFIG": str(tmp_path / "none.yaml")})
    result = CliRunner().invoke(main, ["token", *args], obj=runtime)
    assert message in _one_line_error(result, 2)


# --- processes ----------------------------------------------------------------------------


def test_global_restarted_on_its_data_dir_keeps_resources_and_admin_token(
        tmp_path: Path) -> None:
    env = _clean_env(tmp_path / "config.yaml")
    proc = global_proc(tmp_path / "global", _free_port(), env)
    s = Session(proc, tmp_path, env)
    try:
        proc.start()
        _ok(s.run("config", "control-planes", "add", "--name", "restart", "--address", proc.api,
                  "--token-file", str(s.token_file)))
        admin_token = s.token_file.read_text()
        source = s.write("keep.yaml", """\
type: MeshTimeout
name: survives
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
""")
        _ok(s.run("apply", "-f", str(source)))
        assert proc.stop() == 0  # SIGTERM is a clean stop

        proc.start()
        assert s.token_file.read_text() == admin_token
        got = yaml.safe_load(_ok(s.run("get", "meshtimeout", "survives", "-o", "yaml")))
        assert got["spec"]["to"][0]["default"]["idleTimeout"] == "1h"
        assert _ok(s.run("apply", "-f", str(source))) == "meshtimeout/survives unchanged\n"
    finally:
        proc.stop()
        print(f"--- log ---\n{proc.log()}")


def test_a_second_global_on_a_taken_port_is_one_line_and_exit_1(cp: Session,
                                                                tmp_path: Path) -> None:
    port = int(cp.proc.api.rsplit(":", 1)[1])
    result = subprocess.run(
        [str(GOSSAMER), "global", "run", "--data-dir", str(tmp_path / "other"),
         "--api-addr", f"127.0.0.1:{port}", "--sync-addr", f"127.0.0.1:{_free_port()}"],
        capture_output=True, text=True, env=cp.env, timeout=READY_DEADLINE, check=False)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], result.stderr


@contextlib.contextmanager
def standalone_zone(tmp_path: Path) -> Iterator[tuple[Proc, dict[str, str]]]:
    """`gossamer zone run --zone lab` as a process, and the CLI environment that manages it
    (its address and its own admin token); its log is printed when it stops."""
    env = _clean_env(tmp_path / "config.yaml")
    port = _free_port()
    data_dir = tmp_path / "zone-lab"
    proc = Proc(["zone", "run", "--zone", "lab", "--data-dir", str(data_dir),
                 "--api-addr", f"127.0.0.1:{port}", "--xds-addr", f"127.0.0.1:{_free_port()}"],
                tmp_path / "zone.log", f"http://127.0.0.1:{port}", env)
    try:
        proc.start()
        yield proc, {**env, "GOSSAMER_ADDRESS": proc.api,
                     "GOSSAMER_TOKEN_FILE": str(data_dir / "admin-token")}
    finally:
        proc.stop()
        print(f"--- log ---\n{proc.log()}")


def test_standalone_zone_serves_its_api(tmp_path: Path) -> None:
    with standalone_zone(tmp_path) as (proc, zone_env):
        info = httpx.get(f"{proc.api}/", timeout=5).json()
        assert (info["mode"], info["zone"]) == ("standalone", "lab")
        # The CLI manages it like a global, with its own admin token.
        result = subprocess.run([str(GOSSAMER), "get", "meshes"], capture_output=True,
                                text=True, env=zone_env, timeout=CLI_TIMEOUT, check=False)
        assert _ok(result).splitlines()[1].split()[:2] == ["default", "ca-1"]
        # A standalone zone admits its own sidecars, but zone tokens come from a global.
        result = subprocess.run([str(GOSSAMER), "token", "dataplane", "--service", "web"],
                                capture_output=True, text=True, env=zone_env,
                                timeout=CLI_TIMEOUT, check=False)
        assert _jwt_claims(_ok(result).strip())[1]["kind"] == "dataplane"
        zone_cli = CliRunner().invoke(main, ["token", "zone", "--zone", "east"],
                                      obj=Runtime(env=zone_env))
        line = _one_line_error(zone_cli, 1)
        assert "is a standalone zone: zone tokens are issued by the global" in line


def test_zone_joins_with_a_token_from_the_cli_and_revoking_it_cuts_the_zone_off(
        cp: Session, tmp_path: Path) -> None:
    token_file = tmp_path / "west.token"
    # As an operator would: the token alone on stdout, straight into a file.
    issued = subprocess.run(f"'{GOSSAMER}' token zone --zone west > '{token_file}'", shell=True,
                            capture_output=True, text=True, env=cp.env, timeout=CLI_TIMEOUT,
                            check=False)
    assert issued.returncode == 0, issued.stderr
    token_id = _jwt_claims(token_file.read_text().strip())[1]["jti"]

    port = _free_port()
    sync_port = cp.proc.args[cp.proc.args.index("--sync-addr") + 1].rsplit(":", 1)[1]
    zone = Proc(["zone", "run", "--zone", "west", "--data-dir", str(tmp_path / "zone-west"),
                 "--api-addr", f"127.0.0.1:{port}", "--xds-addr", f"127.0.0.1:{_free_port()}",
                 "--global", f"grpcs://127.0.0.1:{sync_port}", "--token-file", str(token_file),
                 "--global-ca", str(cp.tmp / "global" / "tls" / "ca.pem"),
                 "--heartbeat-interval", "1s", "--heartbeat-timeout", "3s"],
                tmp_path / "zone.log", f"http://127.0.0.1:{port}", cp.env)
    headers = {"Authorization": f"Bearer {cp.token_file.read_text().strip()}"}

    def insight() -> dict[str, Any]:
        r = httpx.get(f"{cp.proc.api}/zones/west/_overview", headers=headers, timeout=5)
        return dict(r.json()["insight"]) if r.status_code == 200 else {}

    try:
        zone.start()
        assert httpx.get(f"{zone.api}/", timeout=5).json()["mode"] == "zone"
        eventually_sync(lambda: insight().get("status") == "Online", READY_DEADLINE,
                        "the zone to be online at the global", interval=0.1)
        assert "west" in _ok(cp.cli("get", "zones")).split()

        _ok(cp.run("token", "revoke", token_id))
        eventually_sync(lambda: insight().get("status") == "Offline", READY_DEADLINE,
                        "the zone to be cut off", interval=0.1)
    finally:
        zone.stop()
        print(f"--- zone log ---\n{zone.log()}")


def _zone_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GOSSAMER), "zone", "run", *args], capture_output=True, text=True,
                          env=env, timeout=CLI_TIMEOUT, check=False)


def test_federated_zone_without_a_way_to_trust_the_global_exits_2(tmp_path: Path) -> None:
    env = _clean_env(tmp_path / "config.yaml")
    result = _zone_run("--zone", "x", "--global", "grpcs://127.0.0.1:1", env=env)
    line = _one_line_error(result, 2)
    assert "--global-ca" in line and "--insecure-skip-verify" in line and "--token-file" in line

    token = tmp_path / "x.token"
    token.write_text("aaa.bbb.ccc\n")
    result = _zone_run("--zone", "x", "--global", "grpcs://127.0.0.1:1", "--token-file",
                       str(token), env=env)
    line = _one_line_error(result, 2)
    assert "--global-ca" in line and "--token-file" not in line
    assert not (tmp_path / ".gossamer").exists()


ZONE_USAGE_ERRORS: Sequence[tuple[list[str], dict[str, str], str]] = [
    (["--global", "grpc://global:5685", "--insecure-skip-verify"], {},
     "plaintext grpc:// is not supported"),
    (["--global", "global:5685"], {}, "expected grpcs://HOST:PORT"),
    (["--global", "grpcs://global"], {}, "expected grpcs://HOST:PORT"),
    (["--global", "grpcs://global:5685/sync"], {}, "expected grpcs://HOST:PORT"),
    (["--global", "grpcs://global:5685", "--insecure-skip-verify", "--token-file", "TMP/none"],
     {}, "cannot read"),
    (["--global", "grpcs://global:5685", "--insecure-skip-verify", "--token-file",
      "TMP/empty"], {}, "is empty"),
    (["--global", "grpcs://global:5685", "--insecure-skip-verify", "--token-file",
      "TMP/admin"], {}, "does not hold a token"),
    (["--global", "grpcs://global:5685", "--global-ca", "TMP/jwt", "--token-file", "TMP/jwt"],
     {}, "not a readable PEM CA bundle"),
    (["--global", "grpcs://global:5685", "--global-ca", "TMP/none", "--token-file", "TMP/jwt"],
     {}, "does not exist"),
    (["--token-file", "TMP/jwt"], {}, "--token-file only apply with --global"),
    ([], {"GOSSAMER_INSECURE_SKIP_VERIFY": "1"}, "--insecure-skip-verify only apply"),
    (["--heartbeat-interval", "10s", "--heartbeat-timeout", "5s"], {},
     "--heartbeat-timeout must be longer"),
    (["--heartbeat-interval", "0s"], {}, "shorter than 100ms"),
    (["--agent-grace", "0s"], {}, "shorter than 1s"),
    ([], {"GOSSAMER_AGENT_GRACE": "soon"}, 'expected a duration like "5s"'),
    (["--api-addr", "localhost"], {}, "expected HOST:PORT"),
    (["--store", "mysql://x"], {}, "expected sqlite, memory"),
    ([], {"GOSSAMER_GLOBAL_ADDRESS": "grpc://global:5685"}, "plaintext"),
]


@pytest.mark.parametrize(("args", "env", "message"), ZONE_USAGE_ERRORS)
def test_zone_run_flags_are_checked_before_it_starts(tmp_path: Path, args: list[str],
                                                     env: dict[str, str], message: str) -> None:
    (tmp_path / "empty").write_text("")
    (tmp_path / "admin").write_text("an-admin-token-not-a-jwt\n")
    (tmp_path / "jwt").write_text("aaa.bbb.ccc\n")
    args = [a.replace("TMP", str(tmp_path)) for a in args]
    runtime = Runtime(env={"GOSSAMER_CONFIG": str(tmp_path / "none.yaml")})
    result = CliRunner(env=env).invoke(main, ["zone", "run", "--zone", "x",
                                              "--data-dir", str(tmp_path / "d"), *args],
                                       obj=runtime)
    assert message in _one_line_error(result, 2)
    assert not (tmp_path / "d").exists()


def test_inspect_meshes_and_rotate_a_builtin_root(tmp_path: Path) -> None:
    """Against a standalone zone, which owns its roots (no other zone to wait for)."""
    with standalone_zone(tmp_path) as (_, zone_env):
        runtime = Runtime(env=zone_env)

        def cli(*args: str) -> Result:
            return CliRunner().invoke(main, list(args), obj=runtime)

        def overview() -> dict[str, Any]:
            items = json.loads(_ok(cli("inspect", "meshes", "-o", "json")))["items"]
            found: dict[str, Any] = next(i for i in items if i["name"] == "default")
            return found

        before = eventually_sync(lambda: overview()["trust"], 30, "the mesh's trust",
                                 interval=0.2)
        assert before["phase"] == "stable" and before["signer"]["backend"] == "ca-1"
        table = _ok(cli("inspect", "meshes"))
        assert table.splitlines()[0].split()[:4] == ["NAME", "ENABLED-BACKEND", "PHASE",
                                                     "SIGNER"]
        row = next(line for line in table.splitlines() if line.startswith("default"))
        assert row.split()[1:5] == ["ca-1", "(builtin)", "stable", "ca-1/0"]

        out = _ok(cli("mesh", "rotate-ca", "default"))
        assert "generation 1" in out
        # No sidecar is connected: nothing to wait for, the new root takes over at once.

        def rotated() -> dict[str, Any] | None:
            trust: dict[str, Any] = overview()["trust"]
            done = trust["signer"]["generation"] == 1 and trust["phase"] == "stable"
            return trust if done else None

        after = eventually_sync(rotated, 30, "the new root to take over", interval=0.2)
        assert after["phase"] == "stable" and after["signer"]["generation"] == 1, after
        assert after["signer"]["roots"] != before["signer"]["roots"]
        assert [r["fingerprint"] for r in after["roots"]] == after["signer"]["roots"]
        assert overview()["zones"][0]["zone"] == "lab"

        missing = cli("mesh", "rotate-ca", "nope")
        assert missing.exit_code != 0 and "nope" in missing.output
        trust_doc = tmp_path / "trust.yaml"
        trust_doc.write_text("type: MeshTrust\nname: default\nspec: {signer: {backend: x, "
                             "type: builtin}, trustBundle: '', bundleDigest: ''}\n")
        refused = cli("apply", "-f", str(trust_doc))
        assert refused.exit_code != 0
        assert "written by the control planes only" in refused.output
