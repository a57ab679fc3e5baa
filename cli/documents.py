"""What ``gossamer apply -f`` reads: files, directories and stdin, split into documents.

Every input is read whole (at most ``MAX_FILE_BYTES``), split into YAML documents (a
``.json`` file is one JSON document), and every document is validated locally with
``parse_document`` before anything is sent, so one run reports every problem of every
file, each located as ``FILE#docN`` (N counts the documents of a file from 1, empty ones
included, so it matches the position between ``---`` separators).

A document of the form ``{items: [...]}`` (what ``gossamer get -o json`` prints for a
list) stands for its items; they are located as ``FILE#docN.items[i]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gossamer.errors import FieldError, InvalidResource
from gossamer.model.registry import REGISTRY, parse_document

MAX_FILE_BYTES = 16 << 20
MAX_DOCUMENTS = 10_000
SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"
_STDIN_LABEL = "<stdin>"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, minus timestamps: ``creationTime`` stays the string it was."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class SourceDocument:
    """One document and where it came from (``policies.yaml#doc2``)."""

    location: str
    body: dict[str, Any]


class InputProblems(InvalidResource):
    """Some inputs are unreadable or invalid; nothing was sent."""

    title = "invalid input"


def _located(location: str, err: FieldError) -> FieldError:
    return FieldError(f"{location}: {err.path}" if err.path else location, err.message)


def split_documents(label: str, data: bytes, is_json: bool
                    ) -> tuple[list[tuple[str, Any]], list[FieldError]]:
    """``[(location, raw document)]`` of one input, empty documents skipped."""
    if is_json:
        try:
            return [(f"{label}#doc1", json.loads(data))], []
        except ValueError as exc:
            return [], [FieldError(label, f"invalid JSON: {exc}")]
    out: list[tuple[str, Any]] = []
    try:
        for n, doc in enumerate(yaml.load_all(data, Loader=_Loader), start=1):
            if doc is not None:
                out.append((f"{label}#doc{n}", doc))
    except yaml.YAMLError as exc:
        return out, [FieldError(label, f"invalid YAML: {_yaml_reason(exc)}")]
    return out, []


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)


def _expand_items(location: str, doc: Any) -> list[tuple[str, Any]]:
    if isinstance(doc, dict) and "type" not in doc and isinstance(doc.get("items"), list):
        return [(f"{location}.items[{i}]", item) for i, item in enumerate(doc["items"])]
    return [(location, doc)]


def check_document(location: str, doc: Any, default_mesh: str | None
                   ) -> tuple[SourceDocument | None, list[FieldError]]:
    """Validate one raw document; fill in ``default_mesh`` where a mesh-scoped one has none."""
    if isinstance(doc, dict) and default_mesh and not doc.get("mesh"):
        desc = REGISTRY.find(doc["type"]) if isinstance(doc.get("type"), str) else None
        if desc is not None and desc.mesh_scoped:
            doc = {**doc, "mesh": default_mesh}
    try:
        parse_document(doc)
    except InvalidResource as exc:
        return None, [_located(location, e) for e in exc.field_errors] or [
            FieldError(location, exc.detail)]
    try:
        json.dumps(doc)
    except (TypeError, ValueError):
        return None, [FieldError(location, "holds a value JSON cannot carry "
                                           "(a !!binary, a set, a NaN...)")]
    return SourceDocument(location, doc), []


def expand_paths(paths: Sequence[str]) -> tuple[list[str], list[FieldError]]:
    """The files behind ``-f`` arguments: a directory gives its *.yaml/*.yml/*.json, sorted."""
    files: list[str] = []
    problems: list[FieldError] = []
    for arg in paths:
        if arg == STDIN:
            files.append(arg)
            continue
        path = Path(arg)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir()
                           if p.suffix.lower() in SUFFIXES and p.is_file())
            if not found:
                problems.append(FieldError(arg, "a directory with no *.yaml, *.yml or *.json"))
            files += found
        else:
            files.append(arg)
    if files.count(STDIN) > 1:
        problems.append(FieldError(STDIN, "stdin can be read only once"))
    return files, problems


def read_input(name: str, read_stdin: Callable[[int], bytes]) -> bytes:
    """The bytes of one file (or stdin), refusing more than ``MAX_FILE_BYTES``."""
    label = _STDIN_LABEL if name == STDIN else name
    if name == STDIN:
        data = read_stdin(MAX_FILE_BYTES + 1)
    else:
        try:
            with open(name, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise InputProblems("cannot read the input",
                                [FieldError(label, exc.strerror or str(exc))]) from None
    if len(data) > MAX_FILE_BYTES:
        raise InputProblems("input too large",
                            [FieldError(label, f"larger than {MAX_FILE_BYTES >> 20} MiB")])
    return data


def load_documents(paths: Sequence[str], read_stdin: Callable[[int], bytes],
                   default_mesh: str | None = None) -> list[SourceDocument]:
    """Every document of every input, validated; ``InputProblems`` lists all problems."""
    files, problems = expand_paths(paths)
    bad = {p.path for p in problems}
    docs: list[SourceDocument] = []
    count = 0
    for name in files:
        label = _STDIN_LABEL if name == STDIN else name
        try:
            data = read_input(name, read_stdin)
        except InputProblems as exc:
            problems += exc.field_errors
            bad.add(label)
            continue
        raw, errs = split_documents(label, data, name.lower().endswith(".json"))
        problems += errs
        if errs:
            bad.add(label)
        for location, doc in (item for loc, d in raw for item in _expand_items(loc, d)):
            count += 1
            if count > MAX_DOCUMENTS:
                raise InputProblems("too many documents", [
                    FieldError(location, f"more than {MAX_DOCUMENTS} documents in one apply")])
            ok, errs = check_document(location, doc, default_mesh)
            problems += errs
            if ok is not None:
                docs.append(ok)
            else:
                bad.add(location)
    if problems:
        raise InputProblems(f"nothing was applied: {len(problems)} problem(s) in "
                            f"{len(bad)} document(s) or file(s)", problems)
    if not docs:
        raise InputProblems("nothing to apply: the input holds no documents")
    return docs
