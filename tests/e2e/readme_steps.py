"""The README's "Calling services by name", read as steps a test can run (pure).

The section is a list of fenced blocks, each opening with ``# on <who> (<HOST>)``, where
``HOST`` is one of the placeholders (``GLOBAL_IP``...) the prose explains: the host the
block is typed on. ``steps(readme)`` returns them in order with the placeholders left in;
``Step.script(addresses)`` fills them in and leaves out the ``scp`` lines, which
``Step.copies`` returns instead (a test has no ssh between its namespaces: it copies the
files between the hosts' directories, which is what those lines do). Parsing the README
itself is what keeps it and the e2e test from drifting apart.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

SECTION = "## Calling services by name"
PLACEHOLDERS = ("GLOBAL_IP", "EAST_CP_IP", "WEST_CP_IP", "BACKEND_IP", "DB_IP", "WEB_IP")
_HEAD = re.compile(r"^# on .*\((?P<host>[A-Z_]+)\)")
_FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)
_SERVERS = re.compile(r"\bgossamer (global|zone|ingress|proxy) run\b")


class ReadmeError(ValueError):
    """The README's section is not in the shape this module reads."""


@dataclass(frozen=True)
class Copy:
    """``scp HOST:path dest``: a file of ``host``'s directory to ``dest`` in this one's."""

    host: str
    path: str
    dest: str


@dataclass(frozen=True)
class Step:
    host: str  # a placeholder: the host whose namespace and directory the block runs in
    text: str  # the block as written

    @property
    def lines(self) -> list[str]:
        """Whole commands: continuation lines joined, comments and blanks dropped."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [line for line in joined.splitlines() if line.strip()
                and not line.lstrip().startswith("#")]

    def copies(self) -> list[Copy]:
        out = []
        for line in self.lines:
            words = shlex.split(line, comments=True)
            if words[:1] != ["scp"]:
                continue
            if len(words) != 3 or ":" not in words[1]:
                raise ReadmeError(f"expected `scp HOST:PATH DEST`, got {line!r}")
            host, _, path = words[1].partition(":")
            out.append(Copy(host, path, words[2]))
        return out

    def script(self, addresses: dict[str, str]) -> str:
        """The block for bash, without its ``scp`` lines, the placeholders filled in."""
        kept = [line for line in self.text.splitlines() if not line.startswith("scp ")]
        return fill("\n".join(kept), addresses) + "\n"

    def servers(self) -> list[str]:
        """Which ``gossamer ... run`` servers the block starts: global, zone, ingress, proxy."""
        return _SERVERS.findall(self.text)


def fill(text: str, addresses: dict[str, str]) -> str:
    missing = [p for p in PLACEHOLDERS if p not in addresses]
    if missing:
        raise ReadmeError(f"no address for {missing}")
    for name in PLACEHOLDERS:
        text = text.replace(name, addresses[name])
    return text


def section(readme: str) -> str:
    start = readme.find(SECTION + "\n")
    if start < 0:
        raise ReadmeError(f"README.md has no {SECTION!r}")
    end = readme.find("\n## ", start + len(SECTION))
    return readme[start:end if end >= 0 else len(readme)]


def steps(readme: str) -> list[Step]:
    out = []
    for block in _FENCE.findall(section(readme)):
        head = _HEAD.match(block)
        if head is None or head.group("host") not in PLACEHOLDERS:
            first = block.splitlines()[0] if block else ""
            raise ReadmeError(f"a block must open with `# on ... (HOST)`, HOST one of "
                              f"{PLACEHOLDERS}; got {first!r}")
        out.append(Step(head.group("host"), block))
    if not out:
        raise ReadmeError(f"{SECTION!r} has no command blocks")
    return out
