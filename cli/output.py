"""How ``gossamer get`` prints resources: a table, YAML or JSON. Pure functions.

The table has NAME, MESH (for mesh-scoped kinds), a kind-specific column only where it is
one field away (a policy's top targetRef, a mesh's enabled mTLS backend, a dataplane's
address and services, a zone's enabled flag) and AGE. Documents from the server are
untrusted input, so every field read here tolerates absence and odd types.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from gossamer.model.kind_index import KindName
from gossamer.model.labels import SERVICE_TAG


def _dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _target_ref(doc: dict[str, Any]) -> str:
    ref = _dig(doc, "spec", "targetRef")
    if not isinstance(ref, dict) or not ref.get("kind"):
        return "-"
    return f"{ref['kind']}/{ref['name']}" if ref.get("name") else str(ref["kind"])


def _mtls(doc: dict[str, Any]) -> str:
    backend = _dig(doc, "mtls", "enabledBackend")
    return str(backend) if backend else "off"


def _address(doc: dict[str, Any]) -> str:
    return str(_dig(doc, "networking", "address") or "-")


def _services(doc: dict[str, Any]) -> str:
    inbounds = _dig(doc, "networking", "inbound")
    names = sorted({str(_dig(ib, "tags", SERVICE_TAG))
                    for ib in (inbounds if isinstance(inbounds, list) else [])
                    if _dig(ib, "tags", SERVICE_TAG)})
    return ",".join(names) or "-"


def _enabled(doc: dict[str, Any]) -> str:
    return "false" if doc.get("enabled") is False else "true"


Column = tuple[str, Callable[[dict[str, Any]], str]]

_KIND_COLUMNS: dict[str, list[Column]] = {
    "Mesh": [("MTLS", _mtls)],
    "Dataplane": [("ADDRESS", _address), ("SERVICES", _services)],
    "Zone": [("ENABLED", _enabled)],
}
_POLICY_COLUMNS: list[Column] = [("TARGETREF", _target_ref)]


def columns(desc: KindName) -> list[Column]:
    return _POLICY_COLUMNS if desc.is_policy else _KIND_COLUMNS.get(desc.name, [])


def format_age(created: Any, now: datetime) -> str:
    """kubectl-style age: ``42s``, ``5m``, ``3h``, ``12d``, ``2y``; ``-`` when unknown."""
    if not isinstance(created, str):
        return "-"
    try:
        when = datetime.fromisoformat(created)
    except ValueError:
        return "-"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0, int((now - when).total_seconds()))
    for limit, unit, size in ((120, "s", 1), (7200, "m", 60), (172800, "h", 3600),
                              (730 * 86400, "d", 86400)):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // (365 * 86400)}y"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [list(headers), *rows]]
    return "\n".join(lines)


def table(desc: KindName, docs: Sequence[dict[str, Any]], now: datetime) -> str:
    cols = columns(desc)
    headers = ["NAME", *(["MESH"] if desc.mesh_scoped else []), *(c[0] for c in cols), "AGE"]
    rows = []
    for doc in docs:
        row = [str(doc.get("name", "-"))]
        if desc.mesh_scoped:
            row.append(str(doc.get("mesh", "-")))
        row += [fn(doc) for _, fn in cols]
        row.append(format_age(doc.get("creationTime"), now))
        rows.append(row)
    return render_table(headers, rows)


def to_yaml(doc: Any) -> str:
    import yaml  # only for -o yaml: a table or JSON costs no YAML

    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


def to_yaml_stream(docs: Sequence[Any]) -> str:
    """A multi-document stream, one ``---`` before each; ``apply -f`` reads it back."""
    import yaml

    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False,
                              allow_unicode=True, explicit_start=True)


def to_json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)
