"""httpx without its command line: the import the CLI's HTTP client goes through.

httpx's own command line (``httpx._main``) imports rich and pygments whenever they are
installed, about 0.1 s of CPU at every start of ``gossamer``, for a module we never run.
A None in ``sys.modules`` makes httpx's ``from ._main import main`` raise ImportError,
which httpx handles by defining a stub ``main``; everything else of httpx is unchanged.
A process that imported httpx before keeps its own (``setdefault``).
``tests/unit/test_cli_imports.py`` pins that ``gossamer get`` loads neither.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

__all__ = ["httpx"]
