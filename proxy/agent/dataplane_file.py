"""The Dataplane file: ``{{ name }}`` placeholders filled from ``--dataplane-var``, then
parsed and validated like any document the API accepts.

Templating is textual (as in Kuma), so a placeholder works quoted or not. Because the
values are pasted into YAML text, they are restricted to characters that cannot change
the document's structure (letters, digits and ``. _ : / @ + = ~ -``; no spaces, quotes,
commas, brackets or newlines) and to 253 characters: a value can fill a scalar and never
add a key. Every placeholder must have a value (an unknown one is an error that names it);
a variable no placeholder uses is reported by ``unused`` for the caller to warn about.

Pure: text in, ``Resource`` or ``DataplaneFileError`` out; ``load`` only reads the file.
The document is checked with a registry of the Dataplane kind alone (``DATAPLANES``), so
the agent loads that one model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gossamer.errors import InvalidResource
from gossamer.model.base import Resource
from gossamer.model.dataplane import DESCRIPTOR, DataplaneSpec
from gossamer.model.registry import Registry, parse_document, to_document
from proxy.agent.errors import DataplaneFileError, InputError

MAX_FILE_BYTES = 1 << 20
MAX_VARS = 64
MAX_VALUE_LENGTH = 253
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_VAR_VALUE = re.compile(r"^[A-Za-z0-9._:/@+=~-]*$")
# The one kind a sidecar reads: checked like the API checks it, without loading the
# models of every other kind (the full registry is the control planes').
DATAPLANES = Registry([DESCRIPTOR])


def parse_vars(items: Iterable[str]) -> dict[str, str]:
    """``["address=10.0.0.7", ...]`` → ``{"address": "10.0.0.7"}`` (``InputError`` if bad)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--dataplane-var {item!r}: expected NAME=VALUE")
        if not _VAR_NAME.match(name):
            raise InputError(f"--dataplane-var {item!r}: a name is a letter or '_' followed "
                             "by letters, digits or '_' (at most 64)")
        if len(value) > MAX_VALUE_LENGTH:
            raise InputError(f"--dataplane-var {name}: longer than {MAX_VALUE_LENGTH} characters")
        if not _VAR_VALUE.match(value):
            raise InputError(f"--dataplane-var {name}={value!r}: only letters, digits and "
                             "'. _ : / @ + = ~ -' are allowed (no spaces, quotes or commas)")
        if name in out:
            raise InputError(f"--dataplane-var {name} is given twice")
        out[name] = value
    if len(out) > MAX_VARS:
        raise InputError(f"more than {MAX_VARS} --dataplane-var values")
    return out


def placeholders(text: str) -> list[str]:
    """The placeholder names in ``text``, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(text):
        seen.setdefault(match.group(1), None)
    return list(seen)


def render(text: str, variables: Mapping[str, str]) -> str:
    """Fill every ``{{ name }}``; an unknown or malformed placeholder is an error."""
    for name in placeholders(text):
        if not _VAR_NAME.match(name):
            raise DataplaneFileError(f"the Dataplane file has a malformed placeholder "
                                     f"{{{{ {name} }}}}: expected {{{{ name }}}}")
        if name not in variables:
            raise DataplaneFileError(f"the Dataplane file uses {{{{ {name} }}}} but no "
                                     f"--dataplane-var {name}=VALUE was given")
    return _PLACEHOLDER.sub(lambda m: variables[m.group(1)], text)


def unused(text: str, variables: Mapping[str, str]) -> list[str]:
    used = set(placeholders(text))
    return sorted(name for name in variables if name not in used)


@dataclass(frozen=True)
class DataplaneFile:
    """A validated Dataplane and the document registered with the zone CP."""

    resource: Resource
    unused_vars: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def mesh(self) -> str:
        return self.resource.mesh

    @property
    def spec(self) -> DataplaneSpec:
        assert isinstance(self.resource.spec, DataplaneSpec)
        return self.resource.spec

    def registration_json(self) -> str:
        """The normalised document, as the JSON the Session's first message carries."""
        return json.dumps(to_document(self.resource, DATAPLANES, with_meta=False), sort_keys=True)


def parse(text: str, variables: Mapping[str, str], source: str = "the Dataplane file"
          ) -> DataplaneFile:
    rendered = render(text, variables)
    try:
        docs = [d for d in yaml.safe_load_all(rendered) if d is not None]
    except yaml.YAMLError as exc:
        raise DataplaneFileError(f"{source} is not valid YAML: {_yaml_problem(exc)}") from None
    if len(docs) != 1:
        raise DataplaneFileError(f"{source} must hold exactly one document, "
                                 f"found {len(docs)}")
    doc: Any = docs[0]
    if not isinstance(doc, dict):
        raise DataplaneFileError(f"{source} must hold a mapping (a Dataplane document)")
    if doc.get("type") != "Dataplane":
        raise DataplaneFileError(f"{source} must describe a Dataplane (type: Dataplane), "
                                 f"found type {doc.get('type')!r}")
    try:
        resource = parse_document(doc, DATAPLANES)
    except InvalidResource as exc:
        raise DataplaneFileError(f"{source}: invalid Dataplane {doc.get('name', '')}".rstrip(),
                                 exc.field_errors) from None
    return DataplaneFile(resource, tuple(unused(text, variables)))


def load(path: Path, variables: Mapping[str, str]) -> DataplaneFile:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read the Dataplane file {path}: "
                         f"{exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise DataplaneFileError(f"{path} is larger than 1 MiB: not a Dataplane file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataplaneFileError(f"{path} is not UTF-8 text") from None
    return parse(text, variables, str(path))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)
