"""Field-by-field merging of policy confs.

Several policies (and several ``to[]``/``from[]`` items) can configure the same
destination. They are put in order, least specific first, and folded into one conf:

- a later (more specific) value overrides an earlier one;
- mappings (nested models, and plain ``dict`` fields such as header maps) merge key by key,
  recursively;
- lists are *replaced* whole, never appended: a more specific policy that lists
  ``backends`` means exactly those backends;
- a field that is unset, or explicitly ``null``, does not override: it inherits.

The merge runs on plain dicts. A conf is dumped with ``exclude_unset=True`` rather than
``exclude_none=True``: the latter would also emit every model default the author never
wrote (``enabled: true`` from ``enabled: bool = True``), and that default would then
override a less specific policy's explicit value. ``exclude_unset`` keeps "not written
means inherit" true; ``None`` values are skipped on top of that so that ``null`` inherits
too. The merged dict is validated back into the conf's own model; the validated model
remembers which fields were set, so merging a merged conf again behaves the same.

Route kinds (``MeshHTTPRoute``, ``MeshTCPRoute``) give a ``to[]`` item a list of rules
instead of a ``default``; those are not merged at all — the last (most specific) item
wins whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel

from gossamer.model.base import format_loc

M = TypeVar("M", bound=BaseModel)

# What one policy item contributes: a conf model, or (route kinds) a tuple of rules.
Conf = BaseModel | tuple[BaseModel, ...]


@dataclass(frozen=True, order=True)
class PolicyRef:
    """Names one policy that contributed to a merged conf (for ``inspect`` and logs)."""

    kind: str
    name: str


@dataclass(frozen=True)
class MergedConf:
    """The effective conf of one policy kind for one inbound, outbound or proxy.

    ``conf`` is the merged conf model (``MeshTimeoutConf``...), or for route kinds the
    winning item's rules as a tuple. ``policies`` are the policies whose items took part,
    in the order they were applied (least specific first, so the last one won any
    conflict). ``problem`` is set when the merged fields did not validate as one conf
    (two policies set mutually exclusive fields); ``conf`` is then the most specific
    item's conf alone, unmerged.
    """

    conf: Conf
    policies: tuple[PolicyRef, ...]
    problem: str | None = None

    def model(self, cls: type[M]) -> M:
        """``conf`` as the caller's expected model type, checked."""
        if not isinstance(self.conf, cls):
            raise TypeError(f"merged conf is {type(self.conf).__name__}, not {cls.__name__}")
        return self.conf

    @property
    def rules(self) -> tuple[BaseModel, ...]:
        """``conf`` as a route kind's rules, checked."""
        if isinstance(self.conf, tuple):
            return self.conf
        raise TypeError(f"merged conf is a {type(self.conf).__name__}, not a list of rules")


def conf_data(conf: BaseModel) -> dict[str, Any]:
    """The fields an author actually wrote, as a plain camelCase dict."""
    return conf.model_dump(mode="json", by_alias=True, exclude_unset=True)


def merge_data(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``: mappings recurse, lists and scalars replace,
    ``None`` is skipped (inherits). Neither argument is modified."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            current = out.get(key)
            out[key] = merge_data(current if isinstance(current, Mapping) else {}, value)
        else:
            out[key] = value
    return out


def merge_confs(items: Sequence[tuple[PolicyRef, Conf]]) -> MergedConf:
    """Fold ``items`` (least specific first) into one ``MergedConf``."""
    if not items:
        raise ValueError("merge_confs needs at least one item")
    last_ref, last = items[-1]
    if isinstance(last, tuple):
        return MergedConf(conf=last, policies=(last_ref,))
    data: dict[str, Any] = {}
    for _, conf in items:
        if isinstance(conf, tuple):  # a route kind mixed with confs: the kind is broken
            raise TypeError("cannot merge a list of rules with a conf")
        data = merge_data(data, conf_data(conf))
    policies = _dedupe(ref for ref, _ in items)
    try:
        merged = type(last).model_validate(data)
    except pydantic.ValidationError as exc:
        problem = "; ".join(f"{format_loc(tuple(e['loc'])) or 'conf'}: {e['msg']}"
                            for e in exc.errors())
        return MergedConf(conf=last, policies=(last_ref,),
                          problem=f"merged conf is invalid, using {last_ref.name} alone: "
                                  f"{problem}")
    return MergedConf(conf=merged, policies=policies)


def _dedupe(refs: Iterable[PolicyRef]) -> tuple[PolicyRef, ...]:
    # A policy with two matching items appears once, where it last applied.
    seen: dict[PolicyRef, None] = {}
    for ref in reversed(list(refs)):
        seen.setdefault(ref, None)
    return tuple(reversed(seen))
