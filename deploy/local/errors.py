"""Errors of the local environment: one base, each says what went wrong and where to look.

``Unsupported`` is the machine's limit (not root, no network namespaces): retrying cannot
help, and the CLI exits with its message. ``CommandFailed`` carries the command and its
output. ``NotReady`` is a process that did not come up in time, with the tail of its log.
"""

from __future__ import annotations

from collections.abc import Sequence


class LocalEnvError(Exception):
    """Base of this package's errors; ``str()`` is a complete sentence for the user."""


class Unsupported(LocalEnvError):
    """This machine cannot run the environment (not root, no netns support)."""


class CommandFailed(LocalEnvError):
    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        super().__init__(f"`{' '.join(self.argv)}` failed ({returncode}): "
                         f"{output.strip()[-2000:]}")


class NotReady(LocalEnvError):
    """Something did not happen before its deadline."""
