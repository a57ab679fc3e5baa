"""Where the agent's keys come from: one ``KeyRequest`` per signing round.

A request holds a fresh key and shows its CSR (``csr_pem``); ``accept`` takes what the
control plane signed and returns the ``Identity`` (key, chain, expiry, URIs) once the
certificate has been checked against the key; ``close`` ends the request (the key is
dropped if it was never accepted).

``child_request`` is the agent's: the key is made and the certificate checked in a child
process (``proxy.agent.keygen``), so the long-running agent never loads ``cryptography``
(issue 17). The child costs an interpreter start and ``cryptography``'s import, about a
tenth of a second of CPU, once per rotation. ``in_process_request`` runs the same steps
in this process: for tests that drive the ``Rotator`` on a fake clock, and for tools
that have ``cryptography`` loaded anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from proxy.agent.errors import ControlPlaneProtocolError, KeyGenerationFailed
from proxy.agent.identity import Identity, SignedCertificate

CHILD_TIMEOUT = 30.0  # RSA-4096 on a loaded machine takes seconds, never this long
LINE_LIMIT = 1 << 20  # a chain of a few certificates is a few KiB
# This interpreter's binary through /proc: a transparent sidecar runs as a user who may
# not traverse the path to it; argv[0] (sys.executable) still finds the venv.
SELF_EXE = "/proc/self/exe"


class KeyRequest(Protocol):
    csr_pem: bytes

    async def accept(self, signed: SignedCertificate, now: dt.datetime) -> Identity: ...

    async def close(self) -> None: ...


KeySource = Callable[[str], Awaitable[KeyRequest]]


class ChildKeyRequest:
    """The conversation with one ``python -m proxy.agent.keygen`` child."""

    def __init__(self, proc: asyncio.subprocess.Process, csr_pem: bytes) -> None:
        self._proc = proc
        self.csr_pem = csr_pem

    async def accept(self, signed: SignedCertificate, now: dt.datetime) -> Identity:
        line = json.dumps({"chain": signed.chain_pem.decode(errors="replace"),
                           "trust": signed.trust_bundle_pem.decode(errors="replace"),
                           "expires_at": signed.expires_at.isoformat(),
                           "now": now.isoformat()})
        reply = await _exchange(self._proc, line)
        if "error" in reply:
            raise ControlPlaneProtocolError(str(reply["error"]))
        try:
            return Identity(key=reply["key"].encode(), chain_pem=signed.chain_pem,
                            received_at=now,
                            not_after=dt.datetime.fromisoformat(reply["not_after"]),
                            uris=tuple(str(u) for u in reply["uris"]))
        except (KeyError, TypeError, AttributeError, ValueError):
            raise await _failed(self._proc, "its answer lacks the key or the expiry") \
                from None

    async def close(self) -> None:
        proc = self._proc
        if proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()  # end of input: the child exits, the key with it
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def child_request(common_name: str) -> KeyRequest:
    """Start a key generator child and read its CSR."""
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.agent.keygen", common_name,
            executable=SELF_EXE, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT)
    except OSError as exc:
        raise KeyGenerationFailed(f"cannot start the key generator: {exc}") from None
    try:
        reply = await _exchange(proc, None)
        return ChildKeyRequest(proc, str(reply["csr"]).encode())
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise


async def _exchange(proc: asyncio.subprocess.Process, line: str | None) -> dict[str, Any]:
    """Send ``line`` (if any) and read the child's one-line JSON answer."""
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if line is not None:
            proc.stdin.write(line.encode() + b"\n")
            await proc.stdin.drain()
        raw = await asyncio.wait_for(proc.stdout.readline(), CHILD_TIMEOUT)
        reply = json.loads(raw)
    except TimeoutError:
        raise await _failed(proc, f"no answer in {CHILD_TIMEOUT:g}s") from None
    except (OSError, ValueError):  # a broken pipe, a line too long or not JSON
        raise await _failed(proc, "it ended or answered something else") from None
    if not isinstance(reply, dict):
        raise await _failed(proc, "it answered something else")
    return reply


async def _failed(proc: asyncio.subprocess.Process, why: str) -> KeyGenerationFailed:
    """The error for a child that misbehaved, with the last line it wrote on stderr."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()
    tail = ""
    if proc.stderr is not None:
        err = (await proc.stderr.read()).decode(errors="replace").strip().splitlines()
        tail = f": {err[-1]}" if err else ""
    return KeyGenerationFailed(f"the key generator failed ({why}; exit status "
                               f"{proc.returncode}){tail}")


class InProcessKeyRequest:
    """The same steps as the child's, in this process (loads ``cryptography``)."""

    def __init__(self, common_name: str) -> None:
        from proxy.agent import keygen

        self._keygen = keygen
        self._key, self.csr_pem = keygen.new_request(common_name)

    async def accept(self, signed: SignedCertificate, now: dt.datetime) -> Identity:
        return self._keygen.accept(self._key, signed, now)

    async def close(self) -> None:
        return None


async def in_process_request(common_name: str) -> InProcessKeyRequest:
    return InProcessKeyRequest(common_name)
