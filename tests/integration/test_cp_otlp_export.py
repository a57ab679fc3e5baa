"""The control planes' own spans reach an OTLP receiver when the standard variables say so.

A real global (``gossamer global run``) exports over OTLP/gRPC to the suite's receiver
(``tests.dataplane_apps.OtlpReceiver``), a real zone (``gossamer zone run``, federated to
it with a zone token) over OTLP/HTTP to ``tests.otlp_http.OtlpHttpReceiver``; both are
configured only by ``OTEL_EXPORTER_OTLP_*`` variables. The zone's sync brings the
global's spans of what it sent (``sync.delta.send``) and the zone's of what it stored
(``sync.delta.apply``), each under its process's ``service.name``; the global's
``/metrics`` has timed the zone's ACKs (``gossamer_zone_sync_lag_seconds``). An unsupported
protocol makes ``zone run`` exit 1 with one line naming the variable.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.cluster import sample, scrape
from tests.dataplane_apps import OtlpReceiver
from tests.integration.cli_env import (
    CLI_TIMEOUT,
    GOSSAMER,
    Proc,
    _clean_env,
    _free_port,
    global_proc,
)
from tests.otlp_http import OtlpHttpReceiver
from tests.waiting import eventually

FAST_BATCHES = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # ms: spans leave within a tenth of a second


def _zone(tmp: Path, global_proc_: Proc, token_file: Path, env: dict[str, str]) -> Proc:
    sync_port = global_proc_.args[global_proc_.args.index("--sync-addr") + 1].rsplit(":", 1)[1]
    port = _free_port()
    return Proc(["zone", "run", "--zone", "west", "--data-dir", str(tmp / "zone-west"),
                 "--api-addr", f"127.0.0.1:{port}", "--xds-addr", f"127.0.0.1:{_free_port()}",
                 "--global", f"grpcs://127.0.0.1:{sync_port}", "--token-file", str(token_file),
                 "--global-ca", str(tmp / "global" / "tls" / "ca.pem")],
                tmp / "zone.log", f"http://127.0.0.1:{port}", env)


async def test_global_over_grpc_and_zone_over_http_export_their_sync_spans(
        tmp_path: Path) -> None:
    grpc_receiver = await OtlpReceiver().start()
    http_receiver = OtlpHttpReceiver().start()
    base = _clean_env(tmp_path / "config.yaml")
    global_env = {**base, **FAST_BATCHES, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                  "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc_receiver.port}"}
    zone_env = {**base, **FAST_BATCHES, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
                    f"http://127.0.0.1:{http_receiver.port}/v1/traces"}
    glob = global_proc(tmp_path / "global", _free_port(), global_env)
    zone: Proc | None = None
    try:
        await asyncio.to_thread(glob.start)
        token_file = tmp_path / "west.token"
        cli_env = {**base, "GOSSAMER_ADDRESS": glob.api,
                   "GOSSAMER_TOKEN_FILE": str(tmp_path / "global" / "admin-token")}
        issued = await asyncio.to_thread(subprocess.run, [str(GOSSAMER), "token", "zone",
                                         "--zone", "west"], capture_output=True, text=True,
                                         env=cli_env, timeout=CLI_TIMEOUT, check=False)
        assert issued.returncode == 0, issued.stderr
        token_file.write_text(issued.stdout.strip())
        zone = _zone(tmp_path, glob, token_file, zone_env)
        await asyncio.to_thread(zone.start)

        def spans(receiver: OtlpReceiver | OtlpHttpReceiver, service: str) -> set[str]:
            return {s.name for s in list(receiver.spans) if s.service == service}

        await eventually(lambda: "sync.delta.send" in spans(grpc_receiver, "gossamer-global"),
                         timeout=30, what="the global's sync spans over OTLP/gRPC")
        await eventually(lambda: "sync.delta.apply" in spans(http_receiver, "gossamer-zone"),
                         timeout=30, what="the zone's sync spans over OTLP/HTTP")
        assert spans(http_receiver, "gossamer-global") == set()  # each to its own receiver
        assert spans(grpc_receiver, "gossamer-zone") == set()
        assert {r.get("gossamer.zone") for r in http_receiver.resources} == {"west"}
        # The global times each change it sent the zone until the zone ACKed it (stored).
        lag = "gossamer_zone_sync_lag_seconds"
        samples = await scrape(glob.api)
        count = sample(samples, f"{lag}_count", zone="west")
        assert count > 0
        assert sample(samples, f"{lag}_bucket", zone="west", le="+Inf") == count
    finally:
        if zone is not None:
            await asyncio.to_thread(zone.stop)
            print(f"--- zone log ---\n{zone.log()}")
        await asyncio.to_thread(glob.stop)
        print(f"--- global log ---\n{glob.log()}")
        http_receiver.stop()
        await grpc_receiver.stop()


@pytest.mark.parametrize("var", ["OTEL_EXPORTER_OTLP_PROTOCOL",
                                 "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"])
def test_an_unsupported_protocol_is_one_line_and_exit_1(tmp_path: Path, var: str) -> None:
    env = {**_clean_env(tmp_path / "config.yaml"), var: "http/json",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    result = subprocess.run([str(GOSSAMER), "zone", "run", "--zone", "lab", "--data-dir",
                             str(tmp_path / "zone"), "--api-addr", f"127.0.0.1:{_free_port()}",
                             "--xds-addr", f"127.0.0.1:{_free_port()}"],
                            capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT,
                            check=False)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {var}='http/json': expected grpc or http/protobuf")
