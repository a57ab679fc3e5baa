"""Stand-in endpoints for the redirect tests, run inside a network namespace (stdlib only).

``python redirect_probe.py MODE ...`` prints ``ready`` once listening, then one JSON line
per event on stdout, so the test (in the root namespace) sees what landed where:

``tcp BIND PORT``      accept, report the peer and ``SO_ORIGINAL_DST``, answer
                       ``hello from PORT`` and close (the capture listeners' stand-in)
``dns BIND PORT``      answer every DNS query on UDP and TCP with an empty NOERROR
                       reply and report it (the resolver's stand-in)
``forward BIND PORT``  like Envoy's passthrough: connect to the original destination and
                       relay one answer back; report each connection
``client HOST PORT N`` connect N times, report how many answers of each text came back
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys

SO_ORIGINAL_DST = 80


def emit(**event: object) -> None:
    print(json.dumps(event), flush=True)


def original_dst(conn: socket.socket) -> str | None:
    """Where the client meant to go; ``None`` when no NAT rewrote it (ENOENT)."""
    try:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port, addr = struct.unpack_from("!2xH4s", raw)
    return f"{socket.inet_ntoa(addr)}:{port}"


def listener(bind: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, port))
    sock.listen(512)
    return sock


def serve_tcp(bind: str, port: int) -> None:
    sock = listener(bind, port)
    emit(event="ready")
    while True:
        conn, peer = sock.accept()
        with conn:
            emit(event="tcp", port=port, peer=f"{peer[0]}:{peer[1]}", orig=original_dst(conn))
            conn.sendall(f"hello from {port}\n".encode())


def reply(query: bytes) -> bytes:
    """The query as an empty answer: QR set, RD kept, RA set, NOERROR."""
    flags = struct.unpack_from("!H", query, 2)[0]
    return query[:2] + struct.pack("!H", 0x8000 | (flags & 0x0100) | 0x0080) + query[4:]


def serve_dns(bind: str, port: int) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((bind, port))
    tcp = listener(bind, port)
    emit(event="ready")
    while True:
        readable, _, _ = select.select([udp, tcp], [], [])
        if udp in readable:
            query, peer = udp.recvfrom(4096)
            emit(event="dns", proto="udp", port=port)
            udp.sendto(reply(query), peer)
        if tcp in readable:
            conn, _ = tcp.accept()
            with conn:
                size = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
                query = conn.recv(size, socket.MSG_WAITALL)
                emit(event="dns", proto="tcp", port=port, orig=original_dst(conn))
                answer = reply(query)
                conn.sendall(struct.pack("!H", len(answer)) + answer)


def forward(bind: str, port: int) -> None:
    sock = listener(bind, port)
    emit(event="ready")
    while True:
        conn, _ = sock.accept()
        with conn:
            orig = original_dst(conn) or "none:0"
            host, _, dport = orig.rpartition(":")
            emit(event="forward", orig=orig)
            try:
                with socket.create_connection((host, int(dport)), timeout=5) as up:
                    conn.sendall(up.recv(4096))
            except OSError as exc:
                emit(event="forward-error", orig=orig, error=str(exc))


def client(host: str, port: int, count: int) -> None:
    answers: dict[str, int] = {}
    for _ in range(count):
        try:
            with socket.create_connection((host, port), timeout=5) as conn:
                text = conn.recv(4096).decode().strip() or "(empty)"
        except OSError as exc:
            text = f"error: {exc}"
        answers[text] = answers.get(text, 0) + 1
    emit(event="client", answers=answers)


def main(argv: list[str]) -> None:
    mode, host, port = argv[0], argv[1], int(argv[2])
    if mode == "client":
        client(host, port, int(argv[3]))
        return
    {"tcp": serve_tcp, "dns": serve_dns, "forward": forward}[mode](host, port)


if __name__ == "__main__":
    main(sys.argv[1:])
