"""The HTTP API's front door over real TCP: the token before the body, the body limit,
and TLS whenever the API listens beyond loopback (DESIGN §5).

"The server did not read the body" is shown the only way a client can see it: the
request declares a body far larger than anything sent, and the answer still comes at
once, with the connection closed behind it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from global_cp.app import GlobalControlPlane
from gossamer.pki.certs import new_leaf, new_root_ca, write_public, write_secret
from gossamer.settings import ApiSettings, GlobalSettings

ANSWER_DEADLINE = 5.0
FIFTY_MB = 50 << 20
TIMEOUT_DOC = ('{"type": "MeshTimeout", "name": "t", "mesh": "default", "spec": '
               '{"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, '
               '"default": {"http": {"requestTimeout": "5s"}}}]}}')
TIMEOUT_PATH = "/meshes/default/meshtimeouts/t"


async def start_global(data_dir: Path, api_addr: str = "127.0.0.1:0",
                       api: ApiSettings | None = None) -> GlobalControlPlane:
    cp = GlobalControlPlane(GlobalSettings(data_dir=data_dir, api_addr=api_addr,
                                           sync_addr="127.0.0.1:0", store="sqlite",
                                           api=api or ApiSettings(max_body=64 << 10)))
    await cp.start()
    return cp


@pytest.fixture
async def cp(tmp_path: Path) -> AsyncIterator[GlobalControlPlane]:
    plane = await start_global(tmp_path / "global")
    yield plane
    await plane.stop()


class RawAnswer:
    def __init__(self, raw: bytes, closed: bool) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in
                        (line.partition(":") for line in lines[1:])}
        self.closed = closed


async def raw_request(cp: GlobalControlPlane, head: str, body: bytes = b"",
                      chunks: int = 0) -> RawAnswer:
    """Send ``head`` (and ``body``, then ``chunks`` chunked 16 KiB pieces), read the
    answer within the deadline, and whether the server closed the connection after it."""
    host, port = cp.bound_api_addr
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        for _ in range(chunks):
            writer.write(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
            await writer.drain()
        await writer.drain()
        raw = await asyncio.wait_for(_read_answer(reader), ANSWER_DEADLINE)
        try:
            closed = await asyncio.wait_for(reader.read(1), ANSWER_DEADLINE) == b""
        except ConnectionResetError:  # closed with some of what we sent unread
            closed = True
        return RawAnswer(raw, closed)
    finally:
        writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


def post_head(path: str, length: int | None, token: str | None) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: api", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None
                 else "Transfer-Encoding: chunked")
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\n".join(lines) + "\n"


async def test_no_token_is_401_before_a_50mb_body_is_sent(cp: GlobalControlPlane) -> None:
    answer = await raw_request(cp, post_head("/_apply", FIFTY_MB, None))
    assert answer.status == 401
    assert b"admin token" in answer.body
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.closed  # the 50 MB are never read


async def test_malformed_json_without_token_is_401_not_400(cp: GlobalControlPlane) -> None:
    async with httpx.AsyncClient(base_url=cp.api_url) as c:
        answer = await c.put(TIMEOUT_PATH, content=b"{not json")
        assert answer.status_code == 401
        wrong = await c.put(TIMEOUT_PATH, content=b"{not json",
                            headers={"Authorization": "Bearer nope"})
        assert (wrong.status_code, wrong.json()["detail"]) == (401, "the bearer token is not "
                                                                    "valid")
        # Unknown paths need the token too: nothing to learn about routes without it.
        assert (await c.get("/no-such-route")).status_code == 401
        for public in ("/", "/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await c.get(public)).status_code == 200, public


async def test_declared_oversized_body_with_token_is_413_at_once(cp: GlobalControlPlane) -> None:
    answer = await raw_request(cp, post_head("/_apply", FIFTY_MB, cp.admin_token))
    assert answer.status == 413
    assert b"64 KiB" in answer.body and b"--api-max-body" in answer.body
    assert answer.closed


async def test_streamed_body_is_cut_at_the_limit_and_nothing_is_stored(
        cp: GlobalControlPlane) -> None:
    # A chunked PUT has no length to judge by: 8 chunks of 16 KiB pass the 64 KiB limit.
    head = post_head(TIMEOUT_PATH, None, cp.admin_token).replace("POST", "PUT", 1)
    answer = await raw_request(cp, head, chunks=8)
    assert answer.status == 413, answer.body
    assert answer.headers["connection"] == "close" and answer.closed
    headers = {"Authorization": f"Bearer {cp.admin_token}"}
    async with httpx.AsyncClient(base_url=cp.api_url, headers=headers) as c:
        assert (await c.get(TIMEOUT_PATH)).status_code == 404
        # A body under the limit is served as before, on the same route.
        stored = await c.put(TIMEOUT_PATH, content=TIMEOUT_DOC.encode(),
                             headers={"Content-Type": "application/json"})
        assert stored.status_code in (200, 201), stored.text


async def test_loopback_api_is_plain_http(cp: GlobalControlPlane) -> None:
    assert cp.api_url.startswith("http://")


def _non_loopback_ip() -> str | None:
    """This host's address toward the outside, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # any routed address; UDP sends nothing
            ip = str(s.getsockname()[0])
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


async def test_wildcard_bind_speaks_tls_verified_by_the_data_dir_ca(tmp_path: Path) -> None:
    cp = await start_global(tmp_path / "global", api_addr="0.0.0.0:0")
    try:
        ca = cp.settings.data_dir / "tls" / "ca.pem"
        assert cp.api_url.startswith("https://127.0.0.1:")
        headers = {"Authorization": f"Bearer {cp.admin_token}"}
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca),
                                     headers=headers) as c:
            assert (await c.get(f"{cp.api_url}/meshes/default")).status_code == 200
        async with httpx.AsyncClient() as c:  # the system's CAs do not know ours
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await c.get(f"{cp.api_url}/healthz")
        plain = cp.api_url.replace("https://", "http://")
        async with httpx.AsyncClient() as c:  # the token never crosses in clear
            with pytest.raises(httpx.TransportError):
                await c.get(f"{plain}/meshes/default", headers=headers)
    finally:
        await cp.stop()


async def test_non_loopback_address_is_named_in_the_certificate(tmp_path: Path) -> None:
    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    cp = await start_global(tmp_path / "global", api_addr=f"{ip}:0")
    try:
        assert cp.api_url.startswith(f"https://{ip}:")
        ca = ssl.create_default_context(cafile=cp.settings.data_dir / "tls" / "ca.pem")
        async with httpx.AsyncClient(verify=ca) as c:
            assert (await c.get(f"{cp.api_url}/healthz")).status_code == 200
    finally:
        await cp.stop()


async def test_provided_certificate_and_forced_tls_on_loopback(tmp_path: Path) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    own_ca = new_root_ca("operator CA", now, dt.timedelta(days=1))
    leaf = new_leaf(own_ca, "api", now, dt.timedelta(days=1), dns=["localhost"],
                    ips=["127.0.0.1"], client=False)
    cert, key, ca_file = tmp_path / "api.pem", tmp_path / "api-key.pem", tmp_path / "ca.pem"
    write_public(cert, leaf.cert_pem())
    write_secret(key, leaf.key_pem())
    write_public(ca_file, own_ca.cert_pem())
    cp = await start_global(tmp_path / "global",
                            api=ApiSettings(tls_cert=cert, tls_key=key))
    try:
        assert cp.api_url.startswith("https://127.0.0.1:")
        verify = ssl.create_default_context(cafile=ca_file)
        async with httpx.AsyncClient(verify=verify) as c:
            assert (await c.get(f"{cp.api_url}/healthz")).status_code == 200
    finally:
        await cp.stop()
    forced = await start_global(tmp_path / "forced", api=ApiSettings(tls=True))
    try:
        assert forced.api_url.startswith("https://")
    finally:
        await forced.stop()
