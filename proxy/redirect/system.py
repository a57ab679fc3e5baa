"""The thin shell around the host: the ``nft`` program, the users, the root check.

Everything here runs a program or reads the system; the decisions are in
``proxy.redirect.ruleset`` (pure). Programs run through a ``Runner`` (``run`` by default)
so the callers stay testable, and every failure becomes one ``RedirectError`` line.
``nft`` applies a whole script with ``-f -`` in one atomic transaction, so a refused
script leaves the namespace's ruleset as it was.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Callable, Sequence

from proxy.redirect.errors import CommandFailed, NoSuchUser, NotRoot, ProgramMissing
from proxy.redirect.settings import parse_uid

Runner = Callable[[Sequence[str], str | None], "subprocess.CompletedProcess[str]"]

# nft's message for a table that is not there (ENOENT from the kernel).
_ABSENT = "No such file or directory"


def run(argv: Sequence[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NotRoot(f"{what} needs root (CAP_NET_ADMIN in the network namespace): "
                      f"run it with sudo, or use --dry-run to only print the rules")


def find_program(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise ProgramMissing(f"the `{name}` program is missing: install Debian's "
                             f"`{package}` package (apt-get install {package})")
    return path


def _first_line(done: subprocess.CompletedProcess[str]) -> str:
    text = (done.stderr or done.stdout).strip()
    return text.splitlines()[0] if text else f"exit status {done.returncode}"


class Nft:
    """The ``nft`` program: list, apply or check a script, for one network namespace (the
    one this process runs in)."""

    def __init__(self, runner: Runner = run, binary: str | None = None) -> None:
        self._binary = binary or find_program("nft", "nftables")
        self._run = runner

    def list_table(self, ref: str) -> str | None:
        """``nft list table REF``'s text, ``None`` when the table does not exist."""
        done = self._run([self._binary, "list", "table", *ref.split()], None)
        if done.returncode == 0:
            return done.stdout
        if _ABSENT in done.stderr:
            return None
        raise CommandFailed(f"nft list table {ref}: {_first_line(done)}")

    def apply(self, script: str) -> None:
        self._nft_file(["-f", "-"], script, "nft -f")

    def check(self, script: str) -> None:
        """Parse and validate ``script`` against the kernel without committing it."""
        self._nft_file(["-c", "-f", "-"], script, "nft -c -f")

    def _nft_file(self, args: list[str], script: str, what: str) -> None:
        done = self._run([self._binary, *args], script)
        if done.returncode != 0:
            raise CommandFailed(f"{what} refused the rules: {_first_line(done)}")


def uid_of(name: str) -> int | None:
    """The user's uid, ``None`` when there is no such user."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def resolve_uid(text: str) -> int:
    """An ``--exclude-uid`` value: a number (``ValueError`` out of range), or the name of
    an existing user."""
    if text.strip().isdigit():
        return parse_uid(text)
    uid = uid_of(text)
    if uid is None:
        raise NoSuchUser(f"--exclude-uid {text}: there is no user named {text!r}")
    return uid


def ensure_system_user(name: str, runner: Runner = run) -> tuple[int, bool]:
    """The user's uid, creating it as a system user (no home, no login) when missing;
    the flag says whether it was created."""
    uid = uid_of(name)
    if uid is not None:
        return uid, False
    useradd = find_program("useradd", "passwd")
    done = runner([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                   "--user-group", name], None)
    if done.returncode != 0:
        raise CommandFailed(f"useradd --system {name}: {_first_line(done)}")
    uid = uid_of(name)
    if uid is None:
        raise CommandFailed(f"useradd --system {name} succeeded but the user is not there")
    return uid, True
