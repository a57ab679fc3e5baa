"""Benchmark: what one gRPC connection with one open stream costs a grpc.aio server, in
RSS, with TLS and without, and under the channel arguments that could shrink it.

Run ``.venv/bin/python -m tests.bench.bench_grpc_conn [--connections 500] [--payload
20000] [--variants NAME ...]``. For each variant it starts a server process (the zone
CP's ``zone_cp.xds_server.OPTIONS`` but its TLS frame size, plus the variant's
arguments; TLS with a certificate of a fresh CA, or insecure) and a client process
that opens ``--connections`` channels, each its own connection
(``grpc.use_local_subchannel_pool``), and on each one stream (``--streams``) that sends a request,
reads a ``--payload``-byte response, ACKs it and reads another, then stays open, as an
ADS stream does. The server's RSS after minus before, per connection, is the variant's
memory. Then every stream asks for ``--rounds`` more responses at once and the client
reports how long until all arrived (MB/s): an argument that saves memory but slows
pushes is worth nothing. Both ends are separate processes, so the client's own memory
is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from gossamer.pki.certs import new_leaf, new_root_ca
from zone_cp.xds_server import OPTIONS

METHOD = "/bench.Conn/Stream"
TSI = "grpc.tsi.max_frame_size"
VARIANTS: dict[str, tuple[bool, list[tuple[str, int]]]] = {
    "insecure": (False, []),
    "tls": (True, []),
    "tls tsi 1k": (True, [(TSI, 1024)]),
    "tls tsi 2k": (True, [(TSI, 2048)]),
    "tls tsi 4k": (True, [(TSI, 4096)]),
    "tls tsi 8k": (True, [(TSI, 8192)]),
    "tls tsi 16k": (True, [(TSI, 16384)]),
    "tls read chunk 4k": (
        True,
        [
            ("grpc.experimental.tcp_read_chunk_size", 4096),
            ("grpc.experimental.tcp_min_read_chunk_size", 1024),
            ("grpc.experimental.tcp_max_read_chunk_size", 4096),
        ],
    ),
    "tls tsi 4k + read 4k": (
        True,
        [
            (TSI, 4096),
            ("grpc.experimental.tcp_read_chunk_size", 4096),
            ("grpc.experimental.tcp_min_read_chunk_size", 1024),
            ("grpc.experimental.tcp_max_read_chunk_size", 4096),
        ],
    ),
    "tls lookahead 1k": (True, [("grpc.http2.lookahead_bytes", 1024)]),
    "tls write buffer 8k": (True, [("grpc.http2.write_buffer_size", 8192)]),
    "tls no bdp probe": (True, [("grpc.http2.bdp_probe", 0)]),
    "tls max streams 4": (True, [("grpc.max_concurrent_streams", 4)]),
    "tls hpack 0": (
        True,
        [("grpc.http2.hpack_table_size.decoder", 0), ("grpc.http2.hpack_table_size.encoder", 0)],
    ),
}


def rss_kib() -> int:
    found = re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text())
    assert found is not None
    return int(found[1])


async def serve(port: int, payload: int, tls_dir: str, options: list[tuple[str, int]]) -> None:
    body = b"x" * payload

    async def stream(requests: Any, _context: Any) -> Any:
        async for request in requests:
            for _ in range(max(1, int(request or b"1"))):
                yield body

    base = [o for o in OPTIONS if o[0] != TSI]  # "tls" is gRPC's default frame size
    server = grpc.aio.server(options=[*base, *options])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Conn", {"Stream": grpc.stream_stream_rpc_method_handler(stream)}
            ),
        )
    )
    addr = f"127.0.0.1:{port}"
    if tls_dir:
        d = Path(tls_dir)
        creds = grpc.ssl_server_credentials(
            [((d / "key.pem").read_bytes(), (d / "cert.pem").read_bytes())]
        )
        server.add_secure_port(addr, creds)
    else:
        server.add_insecure_port(addr)
    await server.start()
    print("rss", rss_kib(), flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        print("rss", rss_kib(), flush=True)


async def client(port: int, count: int, tls_dir: str, rounds: int, streams: int) -> None:
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.keepalive_time_ms", 60_000)]
    target = f"localhost:{port}"
    if tls_dir:
        ca = (Path(tls_dir) / "ca.pem").read_bytes()
        creds = grpc.ssl_channel_credentials(root_certificates=ca)
        channels = [grpc.aio.secure_channel(target, creds, options=options) for _ in range(count)]
    else:
        channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(count)]
    gate = asyncio.Semaphore(32)

    async def open_stream(channel: grpc.aio.Channel) -> Any:
        async with gate:
            call = channel.stream_stream(METHOD)()
            await call.write(b"1")
            await call.read()
            await call.write(b"1")  # the ACK, answered like a next push
            await call.read()
            return call

    calls = await asyncio.gather(*(open_stream(c) for c in channels for _ in range(streams)))
    print("connected", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def burst(call: Any) -> None:
        await call.write(str(rounds).encode())
        for _ in range(rounds):
            await call.read()

    started = time.monotonic()
    await asyncio.gather(*(burst(c) for c in calls))
    print("burst", time.monotonic() - started, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def make_tls(directory: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = new_root_ca("bench CA", now, dt.timedelta(days=1))
    leaf = new_leaf(ca, "localhost", now, dt.timedelta(days=1), dns=["localhost"])
    (directory / "ca.pem").write_bytes(ca.cert_pem())
    (directory / "cert.pem").write_bytes(leaf.cert_pem())
    (directory / "key.pem").write_bytes(leaf.key_pem())


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bench_grpc_conn", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _line(proc: subprocess.Popen[str], tell: bool = False) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    if tell:
        proc.stdin.write("\n")
        proc.stdin.flush()
    return proc.stdout.readline().split()[-1]


def measure(name: str, a: argparse.Namespace, tls_dir: Path) -> dict[str, Any]:
    tls, options = VARIANTS[name]
    port = 47000 + os.getpid() % 1000
    d = str(tls_dir) if tls else ""
    server = _child("server", str(port), str(a.payload), d, json.dumps(options))
    client_proc: subprocess.Popen[str] | None = None
    try:
        before = int(_line(server))
        client_proc = _child(
            "client", str(port), str(a.connections), d, str(a.rounds), str(a.streams)
        )
        if _line(client_proc) != "connected":
            raise RuntimeError(f"{name}: the client did not connect")
        time.sleep(1.0)  # the last responses' buffers freed
        after = int(_line(server, tell=True))
        seconds = float(_line(client_proc, tell=True))
        megabytes = a.connections * a.streams * a.rounds * a.payload / 1e6
        return {
            "variant": name,
            "kib_per_connection": round((after - before) / a.connections, 1),
            "burst_s": round(seconds, 3),
            "mb_per_s": round(megabytes / seconds, 1),
        }
    finally:
        for proc in (client_proc, server):
            if proc is not None:
                proc.kill()
                proc.wait()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("server", "client"):
        role, port, rest = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
        if role == "server":
            options = [(str(k), int(v)) for k, v in json.loads(rest[2])]
            asyncio.run(serve(port, int(rest[0]), rest[1], options))
        else:
            asyncio.run(client(port, int(rest[0]), rest[1], int(rest[2]), int(rest[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--payload", type=int, default=20_000)
    parser.add_argument(
        "--rounds", type=int, default=20, help="responses per stream in the throughput burst"
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=1,
        help="streams per connection (2: a sidecar whose agent carried its Envoy's ADS)",
    )
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    a = parser.parse_args()
    print(
        f"# grpcio {grpc.__version__}, {a.connections} connections of {a.streams} streams, "
        f"payload {a.payload} B, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-grpc-conn-") as tmp:
        make_tls(Path(tmp))
        for name in a.variants:
            print(json.dumps(measure(name, a, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
