"""The agent's token file and its refresher, without a control plane or an Envoy.

``token_file`` is pure: what a valid-looking token is (an invariant, fuzzed: any bytes
either give a token or raise ``TokenFileError`` naming the file), its claimed lifetime,
and when to read the file again. ``TokenRefresher`` runs against a real file and stand-ins
for the client, the Session and Envoy's supervisor that keep only the state it changes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.tokens import DATAPLANE, SigningKey, issue
from proxy.agent import token_file
from proxy.agent.cp_client import Registration
from proxy.agent.token_file import Lifetime, TokenFileError, lifetime, next_check, parse
from proxy.agent.token_refresh import TokenRefresher

PATH = Path("/etc/gossamer/token")
REG = Registration("default", "web-1", "lab", "default.web-1")


def token(valid_for: float = 3600, now: float = 1_000_000) -> str:
    key = SigningKey.generate(now)
    return issue(key, DATAPLANE, "web", valid_for, mesh="default", now=lambda: now)[0]


# -- parsing ------------------------------------------------------------------------------

def test_a_token_alone_in_the_file_is_read_stripped() -> None:
    t = token()
    assert parse(f"\n  {t}\n".encode(), PATH) == t


@pytest.mark.parametrize(("raw", "says"), [
    (b"", "is empty"), (b" \n\t", "is empty"), (b"not a token", "does not hold"),
    (b"a.b", "does not hold"), (b"a.b.c d.e.f", "does not hold"),
    (b"a." + b"b" * (64 << 10) + b".c", "does not hold")])
def test_what_is_not_a_token_is_refused_naming_the_file(raw: bytes, says: str) -> None:
    with pytest.raises(TokenFileError) as caught:
        parse(raw, PATH, "a dataplane token")
    assert str(PATH) in caught.value.detail and says in caught.value.detail


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match=r"cannot read the token file .*missing"):
        token_file.read(tmp_path / "missing")


@given(st.binary(max_size=512))
def test_any_bytes_give_a_token_or_a_token_file_error(raw: bytes) -> None:
    try:
        text = parse(raw, PATH)
    except TokenFileError as exc:
        assert str(PATH) in exc.detail
        return
    assert text.count(".") == 2 and not any(c.isspace() for c in text)


# -- lifetime and schedule ----------------------------------------------------------------

def test_the_lifetime_is_read_without_verifying() -> None:
    assert lifetime(token(600, now=1_000_000)) == Lifetime(1_000_000, 1_000_600)
    assert lifetime("a.b.c") == Lifetime(None, None)


def _jwt(header: bytes, payload: bytes) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{b64(header)}.{b64(payload)}.c2ln"


def test_claims_that_do_not_decode_give_no_lifetime() -> None:
    """Read by hand (no PyJWT in the agent): each way a token can fail to decode is no
    lifetime, never an exception; a claim of the wrong type is a missing one."""
    good = b'{"alg":"EdDSA"}'
    assert lifetime(_jwt(good, b'{"iat": 5, "exp": 65}')) == Lifetime(5, 65)
    assert lifetime(_jwt(good, b'{"iat": true, "exp": "65"}')) == Lifetime(None, None)
    for header, payload in ((good, b"[1, 2]"), (good, b"not json"), (b"[]", b"{}"),
                            (good, b"\xff\xfe"), (b"{", b'{"exp": 1}')):
        assert lifetime(_jwt(header, payload)) == Lifetime(None, None)
    assert lifetime("one.two") == Lifetime(None, None)


@pytest.mark.parametrize(("now", "life", "expected"), [
    (0, Lifetime(0, 1000), 800),  # at 80 % of the life
    (700, Lifetime(0, 1000), 100),
    (800, Lifetime(0, 1000), 100),  # past it, the file still the same: halfway to the end
    (990, Lifetime(0, 1000), 5),
    (999.5, Lifetime(0, 1000), 1),  # never more often than MIN_CHECK
    (1000, Lifetime(0, 1000), None),  # expired: the refused Session reads it at each try
    (0, Lifetime(None, 1000), 500),  # no iat: halfway
    (0, Lifetime(0, None), None),  # no exp: no timer
    (0, Lifetime(2000, 1000), 500),  # nonsense iat: halfway
])
def test_when_to_read_the_file_again(now: float, life: Lifetime,
                                     expected: float | None) -> None:
    assert next_check(now, life) == expected


# -- the refresher ------------------------------------------------------------------------

class Client:
    def __init__(self, token: str) -> None:
        self.token = token


class Session:
    """Stands in for ``proxy.agent.session.Session``: a reconnect re-registers at once
    with the client's token (what the real one does over the network)."""

    def __init__(self, client: Client, refresher: TokenRefresher) -> None:
        self.client, self.refresher = client, refresher
        self.token = client.token
        self.handovers = 0

    def reconnect(self) -> None:
        self.handovers += 1
        self.token = self.client.token
        self.refresher.registered(REG, self.token)


class Envoy:
    def __init__(self) -> None:
        self.epoch = 0

    async def hot_restart(self) -> bool:
        self.epoch += 1
        return True


def refresher(tmp_path: Path, first: str) -> tuple[TokenRefresher, Client, list[str]]:
    client, written = Client(first), list[str]()
    path = tmp_path / "token"
    path.write_text(first)
    tokens = TokenRefresher(path, client, write_bootstrap=written.append,  # type: ignore[arg-type]
                            clock=time.time)
    tokens.session = Session(client, tokens)  # type: ignore[assignment]
    tokens.envoy = Envoy()  # type: ignore[assignment]
    tokens.envoy_token = first
    return tokens, client, written


async def until(check: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(5):
            while not check():
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.mark.parametrize("content", ["", "garbage", None])
async def test_a_bad_file_keeps_the_token_with_one_line_naming_it(
        tmp_path: Path, content: str | None, caplog: pytest.LogCaptureFixture) -> None:
    first = token()
    tokens, client, written = refresher(tmp_path, first)
    path = tmp_path / "token"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with caplog.at_level(logging.WARNING, "proxy.agent.token_refresh"):
        tokens.hangup()
    assert client.token == first and tokens.reloads == 0 and written == []
    assert len(caplog.records) == 1 and str(path) in caplog.records[0].getMessage()


async def test_a_new_token_moves_the_session_then_envoy_once(tmp_path: Path) -> None:
    first, second = token(), token()
    tokens, client, written = refresher(tmp_path, first)
    task = asyncio.create_task(tokens.run())
    try:
        tokens.hangup()  # the same token: nothing moves
        (tmp_path / "token").write_text(second + "\n")
        tokens.hangup()
        assert client.token == second
        await until(lambda: written == [second], "Envoy's bootstrap with the new token")
        envoy, session = tokens.envoy, tokens.session
        assert envoy is not None and session is not None
        assert envoy.epoch == 1 and tokens.envoy_token == second
        tokens.registered(REG, second)  # registered again with the same token
        tokens.hangup()
        for _ in range(10):  # the run loop's turns (nothing in it waits on I/O here)
            await asyncio.sleep(0)
        assert envoy.epoch == 1 and written == [second]
        assert session.handovers == 1  # type: ignore[attr-defined]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_certificate_request_signs_with_the_token_the_session_holds(
        tmp_path: Path) -> None:
    first, second = token(), token()
    tokens, _, _ = refresher(tmp_path, first)
    assert await tokens.sign_token() == first
    (tmp_path / "token").write_text(second)
    assert await tokens.sign_token() == second  # handed over first, then signed
    session = tokens.session
    assert session is not None and session.token == second
