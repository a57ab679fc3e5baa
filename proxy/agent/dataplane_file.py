"""The Dataplane file: ``{{ name }}`` placeholders filled from ``--dataplane-var``, then
parsed and validated like any document the API accepts.

Templating is textual (as in Kuma), so a placeholder works quoted or not. Because the
values are pasted into YAML text, they are restricted to characters that cannot change
the document's structure (letters, digits and ``. _ : / @ + = ~ -``; no spaces, quotes,
commas, brackets or newlines) and to 253 characters: a value can fill a scalar and never
add a key. Every placeholder must have a value (an unknown one is an error that names it);
a variable no placeholder uses is reported by ``unused`` for the caller to warn about.

Pure: text in, ``DataplaneFile`` or ``DataplaneFileError`` out; ``load`` only reads the
file. The document is checked with a registry of the Dataplane kind alone, so the
command loads that one model, and only while it checks (``validate`` imports it):
``DataplaneFile`` is plain data (the normalised document and the few facts the agent
reads from it), so the agent that runs for the workload's lifetime never loads pydantic
(issue 17; ``cli.agent_runtime``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.agent.errors import DataplaneFileError, InputError

if TYPE_CHECKING:
    import yaml

MAX_FILE_BYTES = 1 << 20
MAX_VARS = 64
MAX_VALUE_LENGTH = 253
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_VAR_VALUE = re.compile(r"^[A-Za-z0-9._:/@+=~-]*$")


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
    """A validated Dataplane as plain data: the normalised document registered with the
    zone CP, and what the agent reads from it."""

    document: MappingType[str, Any]  # as the API stores it, without system meta
    services: tuple[str, ...] = ()  # the inbounds' services, sorted
    admin_port: int | None = None  # networking.admin.port
    transparent: bool = False  # whether networking.transparentProxying is set
    unused_vars: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.document["name"])

    @property
    def mesh(self) -> str:
        return str(self.document["mesh"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.document.get("labels") or {})

    def with_labels(self, labels: Mapping[str, str]) -> DataplaneFile:
        return replace(self, document={**self.document, "labels": dict(labels)})

    def registration_json(self) -> str:
        """The normalised document, as the JSON the Session's first message carries."""
        return json.dumps(self.document, sort_keys=True)


def validate(doc: Mapping[str, Any], what: str, unused_vars: tuple[str, ...] = ()
             ) -> DataplaneFile:
    """Check ``doc`` like the API checks a Dataplane; ``what`` names it in the error."""
    # Imported here: only the command that checks the file loads the model (pydantic).
    from gossamer.errors import InvalidResource
    from gossamer.model.dataplane import DESCRIPTOR, DataplaneSpec
    from gossamer.model.registry import Registry, parse_document, to_document

    dataplanes = Registry([DESCRIPTOR])  # this kind alone, not every kind's model
    try:
        resource = parse_document(doc, dataplanes)
    except InvalidResource as exc:
        raise DataplaneFileError(f"{what}: invalid Dataplane {doc.get('name', '')}".rstrip(),
                                 exc.field_errors) from None
    spec = resource.spec
    assert isinstance(spec, DataplaneSpec)
    admin = spec.networking.admin
    return DataplaneFile(
        document=to_document(resource, dataplanes, with_meta=False),
        services=tuple(spec.services), admin_port=admin.port if admin else None,
        transparent=spec.networking.transparent_proxying is not None,
        unused_vars=unused_vars)


def parse(text: str, variables: Mapping[str, str], source: str = "the Dataplane file"
          ) -> DataplaneFile:
    # PyYAML is loaded here, in the command that checks the file, and never by the agent's
    # runtime, which receives the checked DataplaneFile (issue 17: 0.8 MB per sidecar).
    import yaml

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
    return validate(doc, source, tuple(unused(text, variables)))


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
