"""Header matches and header modifiers from the policy models, as Envoy messages.

Shared by routes (matches, request/response header filters), retries (retriable
headers), rate limits (headers on a 429) and health checks (request headers).
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import string_pb2

from gossamer.model.policy_fields import HeaderMatch, HeaderMatchType, HeaderModifier
from proxy.envoy.protos import regex

_Match = route_components_pb2.HeaderMatcher
_Option = base_pb2.HeaderValueOption


def header_matcher(match: HeaderMatch) -> route_components_pb2.HeaderMatcher:
    kind = match.type
    if kind is HeaderMatchType.PRESENT:
        return _Match(name=match.name, present_match=True)
    if kind is HeaderMatchType.ABSENT:
        return _Match(name=match.name, present_match=False)
    value = match.value or ""
    if kind is HeaderMatchType.REGULAR_EXPRESSION:
        string = string_pb2.StringMatcher(safe_regex=regex(value))
    elif kind is HeaderMatchType.PREFIX:
        string = string_pb2.StringMatcher(prefix=value)
    else:
        string = string_pb2.StringMatcher(exact=value)
    return _Match(name=match.name, string_match=string)


def header_options(modifier: HeaderModifier | None) -> list[base_pb2.HeaderValueOption]:
    """``set`` overwrites (or adds), ``add`` appends; ``remove`` is handled by callers."""
    if modifier is None:
        return []
    out = [_Option(header=base_pb2.HeaderValue(key=h.name, value=h.value),
                   append_action=_Option.OVERWRITE_IF_EXISTS_OR_ADD)
           for h in modifier.set or []]
    out += [_Option(header=base_pb2.HeaderValue(key=h.name, value=h.value),
                    append_action=_Option.APPEND_IF_EXISTS_OR_ADD)
            for h in modifier.add or []]
    return out


def header_removals(modifier: HeaderModifier | None) -> list[str]:
    return list(modifier.remove or []) if modifier else []
