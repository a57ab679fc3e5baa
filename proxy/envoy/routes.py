"""MeshHTTPRoute and MeshTCPRoute → Envoy routes and TCP proxy targets.

An outbound HTTP listener fetches the route configuration ``outbound:<service>`` by
RDS: one virtual host matching any authority, with one Envoy route per MeshHTTPRoute
match, then a catch-all route to the service's own cluster. Matches are ordered by
Gateway API precedence (exact path, then longer prefixes, then regex; then method, more
headers, more query parameters), ties kept in rule order; within a match every condition
must hold (``path``/``path_separated_prefix``/``safe_regex``, ``:method`` and header
matchers, query parameter matchers).

Rule filters: header modifiers → ``request/response_headers_to_add/remove``;
``RequestRedirect`` → a ``redirect`` action; ``URLRewrite`` → ``host_rewrite_literal``
or ``auto_host_rewrite`` (the backend's ``<service>.mesh``, see ``endpoints``) and
``prefix_rewrite``/``regex_rewrite`` (a prefix rewritten to
``/`` or from ``/`` uses a regex so no ``//`` appears); ``RequestMirror`` →
``request_mirror_policies`` at the given percentage. ``backendRefs`` → the cluster, or
``weighted_clusters`` when there are several; weight-0 backends are dropped, and a rule
whose backends all weigh 0 answers 500, as the Gateway API asks. ``port`` on a backend is
ignored (a service is one cluster).

Backends by tags: a ``MeshServiceSubset`` backend is a cluster of its own,
``<service>__<digest of tags>``, whose load assignment holds only the instances carrying
the tags (``endpoints``). Separate clusters rather than Envoy's subset load balancer,
because each is then an ordinary EDS cluster the zone CP caches and shares like any
other, weighted splits are plain ``weighted_clusters``, and an instance's tags never need
to be matched at request time.

MeshTCPRoute: its one rule's ``backendRefs`` become the TCP proxy's
``weighted_clusters`` (or ``cluster``). For an HTTP destination with no MeshHTTPRoute, a
MeshTCPRoute's backends become the catch-all route's backends.

Every route action to a backend also gets the destination's timeouts, retry policy and
hash policies from ``settle`` (supplied by ``outbound``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from gossamer.model.meshhttproute import (
    Filter,
    FilterType,
    Match,
    PathMatchType,
    PathRewrite,
    PathRewriteType,
    QueryParamMatch,
    RequestRedirect,
    Rule,
    UrlRewrite,
)
from gossamer.model.meshtcproute import TcpRule
from gossamer.model.policy_fields import BackendRef
from gossamer.policy.selectors import TagSet
from proxy.envoy import names
from proxy.envoy.headers import header_matcher, header_options, header_removals
from proxy.envoy.protos import exact, regex, runtime_fraction, u32

Settle = Callable[[rc_pb2.RouteAction], None]
_REDIRECT_CODES = {301: rc_pb2.RedirectAction.MOVED_PERMANENTLY,
                   302: rc_pb2.RedirectAction.FOUND,
                   303: rc_pb2.RedirectAction.SEE_OTHER,
                   307: rc_pb2.RedirectAction.TEMPORARY_REDIRECT,
                   308: rc_pb2.RedirectAction.PERMANENT_REDIRECT}
NO_BACKEND_STATUS = 500


@dataclass(frozen=True)
class Backend:
    """A cluster a route sends to: a service, or a tagged subset of one, or one port of
    a service with several (``proxy.envoy.ports``), or its instances in one ``zone`` (a
    zone-pinned name's)."""

    service: str
    subset: TagSet = ()
    port: int | None = None
    zone: str = ""

    @property
    def cluster(self) -> str:
        return names.cluster(self.service, self.subset, self.port, self.zone)

    @classmethod
    def of(cls, ref: BackendRef) -> Backend:
        return cls(ref.name, names.tag_set(ref.tags))


def _precedence(match: Match) -> tuple[int, int, int, int, int]:
    path = match.path
    if path is None:
        kind, length = 2, 1
    elif path.type is PathMatchType.EXACT:
        kind, length = 0, len(path.value)
    elif path.type is PathMatchType.PATH_PREFIX:
        kind, length = 2, len(path.value)
    else:
        kind, length = 1, 0
    return (kind, -length, 0 if match.method else 1, -len(match.headers or []),
            -len(match.query_params or []))


def _query(param: QueryParamMatch) -> rc_pb2.QueryParameterMatcher:
    if param.type.value == "RegularExpression":
        string = string_pb2.StringMatcher(safe_regex=regex(param.value))
    else:
        string = string_pb2.StringMatcher(exact=param.value)
    return rc_pb2.QueryParameterMatcher(name=param.name, string_match=string)


def route_match(match: Match) -> rc_pb2.RouteMatch:
    out = rc_pb2.RouteMatch()
    path = match.path
    if path is None or (path.type is PathMatchType.PATH_PREFIX and path.value == "/"):
        out.prefix = "/"
    elif path.type is PathMatchType.EXACT:
        out.path = path.value
    elif path.type is PathMatchType.PATH_PREFIX:
        out.path_separated_prefix = path.value
    else:
        out.safe_regex.CopyFrom(regex(path.value))
    if match.method:
        out.headers.append(rc_pb2.HeaderMatcher(name=":method",
                                                string_match=exact(match.method.value)))
    out.headers.extend(header_matcher(h) for h in match.headers or [])
    out.query_parameters.extend(_query(q) for q in match.query_params or [])
    return out


def _prefix_regex(prefix: str, replacement: str) -> regex_pb2.RegexMatchAndSubstitute | None:
    """``ReplacePrefixMatch`` cases plain ``prefix_rewrite`` gets wrong (``//``)."""
    if prefix == "/":
        return regex_pb2.RegexMatchAndSubstitute(
            pattern=regex("^/"), substitution=replacement.rstrip("/") + "/")
    if replacement == "/":
        return regex_pb2.RegexMatchAndSubstitute(
            pattern=regex(f"^{re.escape(prefix)}/*"), substitution="/")
    return None


def _rewrite_path(action: rc_pb2.RouteAction | rc_pb2.RedirectAction, rewrite: PathRewrite,
                  match: Match) -> None:
    if rewrite.type is PathRewriteType.REPLACE_FULL_PATH:
        full = rewrite.replace_full_path or "/"
        if isinstance(action, rc_pb2.RedirectAction):
            action.path_redirect = full
        else:
            action.regex_rewrite.CopyFrom(regex_pb2.RegexMatchAndSubstitute(
                pattern=regex("^.*$"), substitution=full))
        return
    replacement = rewrite.replace_prefix_match or "/"
    prefix = match.path.value if match.path else "/"
    special = _prefix_regex(prefix, replacement)
    if special is not None:
        action.regex_rewrite.CopyFrom(special)
    else:
        action.prefix_rewrite = replacement.rstrip("/") or "/"


def _redirect(redirect: RequestRedirect, match: Match) -> rc_pb2.RedirectAction:
    out = rc_pb2.RedirectAction(response_code=_REDIRECT_CODES[redirect.status_code])
    if redirect.scheme:
        out.scheme_redirect = redirect.scheme.value
    if redirect.hostname:
        out.host_redirect = redirect.hostname
    if redirect.port:
        out.port_redirect = redirect.port
    if redirect.path:
        _rewrite_path(out, redirect.path, match)
    return out


def _url_rewrite(action: rc_pb2.RouteAction, rewrite: UrlRewrite, match: Match) -> None:
    if rewrite.hostname:
        action.host_rewrite_literal = rewrite.hostname
    elif rewrite.host_to_backend_hostname:
        action.auto_host_rewrite.value = True
    if rewrite.path:
        _rewrite_path(action, rewrite.path, match)


def set_backends(action: rc_pb2.RouteAction, backends: Sequence[tuple[Backend, int]]) -> bool:
    """Point ``action`` at weighted ``backends``; False when none has weight."""
    live = [(b, w) for b, w in backends if w > 0]
    if not live:
        return False
    if len(live) == 1:
        action.cluster = live[0][0].cluster
    else:
        action.weighted_clusters.clusters.extend(
            rc_pb2.WeightedCluster.ClusterWeight(name=b.cluster, weight=u32(w)) for b, w in live)
    return True


def _filters_of(rule: Rule, kind: FilterType) -> list[Filter]:
    return [f for f in rule.default.filters or [] if f.type is kind]


def _rule_route(rule: Rule, match: Match, service: str, settle: Settle,
                backends: set[Backend], port: int | None = None) -> rc_pb2.Route:
    route = rc_pb2.Route(match=route_match(match))
    for f in _filters_of(rule, FilterType.REQUEST_HEADER_MODIFIER):
        route.request_headers_to_add.extend(header_options(f.request_header_modifier))
        route.request_headers_to_remove.extend(header_removals(f.request_header_modifier))
    for f in _filters_of(rule, FilterType.RESPONSE_HEADER_MODIFIER):
        route.response_headers_to_add.extend(header_options(f.response_header_modifier))
        route.response_headers_to_remove.extend(header_removals(f.response_header_modifier))
    for f in _filters_of(rule, FilterType.REQUEST_REDIRECT):
        if f.request_redirect is not None:
            route.redirect.CopyFrom(_redirect(f.request_redirect, match))
            return route
    refs = rule.default.backend_refs
    chosen = ([(Backend(service, port=port), 1)] if refs is None
              else [(Backend.of(r), r.weight) for r in refs])
    action = rc_pb2.RouteAction()
    if not set_backends(action, chosen):
        route.direct_response.status = NO_BACKEND_STATUS
        return route
    backends.update(b for b, w in chosen if w > 0)
    for f in _filters_of(rule, FilterType.URL_REWRITE):
        if f.url_rewrite is not None:
            _url_rewrite(action, f.url_rewrite, match)
    for f in _filters_of(rule, FilterType.REQUEST_MIRROR):
        mirror = f.request_mirror
        if mirror is not None:
            target = Backend.of(mirror.backend_ref)
            backends.add(target)
            action.request_mirror_policies.append(rc_pb2.RouteAction.RequestMirrorPolicy(
                cluster=target.cluster, runtime_fraction=runtime_fraction(
                    mirror.percentage if mirror.percentage is not None else 100,
                    "gossamer.mirror")))
    settle(action)
    route.route.CopyFrom(action)
    return route


def tcp_backends(rules: Sequence[TcpRule]) -> list[tuple[Backend, int]]:
    if not rules:
        return []
    return [(Backend.of(r), r.weight) for r in rules[0].default.backend_refs]


def outbound_route_config(service: str, http_rules: Sequence[Rule],
                          tcp_rules: Sequence[TcpRule], settle: Settle,
                          port: int | None = None, zone: str = ""
                          ) -> tuple[route_pb2.RouteConfiguration, set[Backend]]:
    """The RDS route configuration of ``service``'s outbound listener (of its ``port``
    when the listener sends to one port of it; of its instances in ``zone`` for a
    zone-pinned name, with no rules), and every backend it may send to (so their
    clusters can be generated)."""
    backends: set[Backend] = set()
    matches = [(rule, match) for rule in http_rules for match in rule.matches]
    matches.sort(key=lambda rm: _precedence(rm[1]))
    routes = [_rule_route(rule, match, service, settle, backends, port)
              for rule, match in matches]
    fallback = tcp_backends(tcp_rules) if not http_rules else []
    default = fallback or [(Backend(service, port=port, zone=zone), 1)]
    action = rc_pb2.RouteAction()
    catch_all = rc_pb2.Route(match=rc_pb2.RouteMatch(prefix="/"))
    if set_backends(action, default):
        backends.update(b for b, w in default if w > 0)
        settle(action)
        catch_all.route.CopyFrom(action)
    else:
        catch_all.direct_response.status = NO_BACKEND_STATUS
    routes.append(catch_all)
    for i, route in enumerate(routes):
        route.name = f"{service}:{i}"
    config = route_pb2.RouteConfiguration(
        name=names.outbound_route(service, port, zone),
        virtual_hosts=[rc_pb2.VirtualHost(name=service, domains=["*"], routes=routes)])
    return config, backends


def set_tcp_backends(proxy: tcp_proxy_pb2.TcpProxy, backends: Sequence[tuple[Backend, int]]
                     ) -> bool:
    live = [(b, w) for b, w in backends if w > 0]
    if not live:
        return False
    if len(live) == 1:
        proxy.cluster = live[0][0].cluster
    else:
        proxy.weighted_clusters.clusters.extend(
            tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=b.cluster, weight=w)
            for b, w in live)
    return True
