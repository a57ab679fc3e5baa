"""MeshHTTPRoute: match outbound HTTP requests and send them to weighted backends.

Each ``to[]`` item names a destination service and lists ``rules``; each rule becomes
one Envoy route on that service's outbound virtual host: ``matches`` become the route
match (any match selects the rule; within one match every condition must hold),
``filters`` the header mutations, redirect, rewrite and mirror, and ``backendRefs`` a
``weighted_clusters`` action.

A ``to[]`` item may name a MeshExternalService: its rules match, rewrite, redirect and
change headers of the requests sent to it, and send them to it alone (no
``backendRefs``, no ``RequestMirror``: another backend would take traffic meant for a
destination outside the mesh somewhere else, which a route on it should not hide).
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field, StrictBool, StrictInt, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Percentage, Port
from gossamer.model.policy import MAX_ITEMS, PolicySpec, TargetKind, TargetRef
from gossamer.model.policy_fields import (
    ROUTE_TO_KINDS,
    BackendRef,
    HeaderMatch,
    HeaderModifier,
    Hostname,
    HttpMethod,
    Token,
    UrlPath,
    fail_at,
    require_regex,
)

MAX_PATH = 1024
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class PathMatchType(enum.StrEnum):
    EXACT = "Exact"
    PATH_PREFIX = "PathPrefix"
    REGULAR_EXPRESSION = "RegularExpression"


class PathMatch(BaseModel):
    model_config = SPEC_CONFIG

    type: PathMatchType
    value: str = Field(min_length=1, max_length=MAX_PATH)

    @model_validator(mode="after")
    def _value(self) -> PathMatch:
        if self.type is PathMatchType.REGULAR_EXPRESSION:
            require_regex("value", self.value)
        elif not self.value.startswith("/"):
            fail_at("value", "a path must start with '/'", self.value)
        elif self.type is PathMatchType.PATH_PREFIX and len(self.value) > 1 \
                and self.value.endswith("/"):
            # Prefixes match whole segments ("/api" matches "/api/x", not "/apix").
            fail_at("value", "a PathPrefix must not end with '/' unless it is \"/\"", self.value)
        return self


class QueryParamMatchType(enum.StrEnum):
    EXACT = "Exact"
    REGULAR_EXPRESSION = "RegularExpression"


class QueryParamMatch(BaseModel):
    model_config = SPEC_CONFIG

    type: QueryParamMatchType = QueryParamMatchType.EXACT
    name: Token
    value: str = Field(max_length=1024)

    @model_validator(mode="after")
    def _value(self) -> QueryParamMatch:
        if self.type is QueryParamMatchType.REGULAR_EXPRESSION:
            require_regex("value", self.value)
        return self


class Match(BaseModel):
    model_config = SPEC_CONFIG

    path: PathMatch | None = None
    method: HttpMethod | None = None
    headers: list[HeaderMatch] | None = Field(None, max_length=16)
    query_params: list[QueryParamMatch] | None = Field(None, max_length=16)


class PathRewriteType(enum.StrEnum):
    REPLACE_FULL_PATH = "ReplaceFullPath"
    REPLACE_PREFIX_MATCH = "ReplacePrefixMatch"


class PathRewrite(BaseModel):
    model_config = SPEC_CONFIG

    type: PathRewriteType
    replace_full_path: UrlPath | None = None
    replace_prefix_match: UrlPath | None = None

    @model_validator(mode="after")
    def _one(self) -> PathRewrite:
        full = self.type is PathRewriteType.REPLACE_FULL_PATH
        wanted, other = (("replaceFullPath", "replacePrefixMatch") if full
                         else ("replacePrefixMatch", "replaceFullPath"))
        values = {"replaceFullPath": self.replace_full_path,
                  "replacePrefixMatch": self.replace_prefix_match}
        if values[wanted] is None:
            fail_at(wanted, f"a path rewrite of type {self.type.value} needs {wanted}")
        if values[other] is not None:
            fail_at(other, f"a path rewrite of type {self.type.value} takes no {other}")
        return self


class Scheme(enum.StrEnum):
    HTTP = "http"
    HTTPS = "https"


class RequestRedirect(BaseModel):
    model_config = SPEC_CONFIG

    scheme: Scheme | None = None
    hostname: Hostname | None = None
    path: PathRewrite | None = None
    port: Port | None = None
    status_code: StrictInt = 302

    @model_validator(mode="after")
    def _status(self) -> RequestRedirect:
        if self.status_code not in REDIRECT_STATUSES:
            fail_at("statusCode", f"expected one of {', '.join(map(str, REDIRECT_STATUSES))}",
                    self.status_code)
        return self


class UrlRewrite(BaseModel):
    model_config = SPEC_CONFIG

    hostname: Hostname | None = None
    path: PathRewrite | None = None
    host_to_backend_hostname: StrictBool | None = None

    @model_validator(mode="after")
    def _host(self) -> UrlRewrite:
        if self.hostname and self.host_to_backend_hostname:
            fail_at("hostToBackendHostname", "hostname and hostToBackendHostname are exclusive")
        return self


class RequestMirror(BaseModel):
    model_config = SPEC_CONFIG

    backend_ref: BackendRef
    percentage: Percentage | None = None


class FilterType(enum.StrEnum):
    REQUEST_HEADER_MODIFIER = "RequestHeaderModifier"
    RESPONSE_HEADER_MODIFIER = "ResponseHeaderModifier"
    REQUEST_REDIRECT = "RequestRedirect"
    URL_REWRITE = "URLRewrite"
    REQUEST_MIRROR = "RequestMirror"


_FILTER_SECTIONS = {
    FilterType.REQUEST_HEADER_MODIFIER: "requestHeaderModifier",
    FilterType.RESPONSE_HEADER_MODIFIER: "responseHeaderModifier",
    FilterType.REQUEST_REDIRECT: "requestRedirect",
    FilterType.URL_REWRITE: "urlRewrite",
    FilterType.REQUEST_MIRROR: "requestMirror",
}


class Filter(BaseModel):
    model_config = SPEC_CONFIG

    type: FilterType
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: UrlRewrite | None = None
    request_mirror: RequestMirror | None = None

    @model_validator(mode="after")
    def _section(self) -> Filter:
        wanted = _FILTER_SECTIONS[self.type]
        given = self.model_dump(by_alias=True, exclude_none=True)
        for section in _FILTER_SECTIONS.values():
            if section in given and section != wanted:
                fail_at(section, f"a filter of type {self.type.value} takes no {section}")
        if wanted not in given:
            fail_at(wanted, f"a filter of type {self.type.value} needs {wanted}")
        return self

    @property
    def path_rewrite(self) -> PathRewrite | None:
        action = self.request_redirect or self.url_rewrite
        return action.path if action else None


class RouteConf(BaseModel):
    model_config = SPEC_CONFIG

    filters: list[Filter] | None = Field(None, max_length=16)
    backend_refs: list[BackendRef] | None = Field(None, max_length=16)

    @model_validator(mode="after")
    def _filters(self) -> RouteConf:
        types = [f.type for f in self.filters or []]
        for i, kind in enumerate(types):
            if kind is not FilterType.REQUEST_MIRROR and kind in types[:i]:
                fail_at(("filters", i), f"only one {kind.value} filter is allowed per rule")
        if FilterType.REQUEST_REDIRECT in types:
            if FilterType.URL_REWRITE in types:
                fail_at("filters", "RequestRedirect and URLRewrite cannot be used together")
            if self.backend_refs:
                fail_at("backendRefs", "a rule that redirects sends nothing to backendRefs")
        return self


class Rule(BaseModel):
    model_config = SPEC_CONFIG

    matches: list[Match] = Field(min_length=1, max_length=32)
    default: RouteConf

    @model_validator(mode="after")
    def _prefix_rewrite(self) -> Rule:
        # ReplacePrefixMatch replaces the matched prefix, so every match must have one.
        for i, filt in enumerate(self.default.filters or []):
            rewrite = filt.path_rewrite
            if rewrite and rewrite.type is PathRewriteType.REPLACE_PREFIX_MATCH and any(
                    m.path is None or m.path.type is not PathMatchType.PATH_PREFIX
                    for m in self.matches):
                fail_at(("default", "filters", i),
                        "ReplacePrefixMatch needs every match of the rule to have a "
                        "PathPrefix path")
        return self


class RouteTo(BaseModel):
    """One destination service and the rules for requests sent to it."""

    model_config = SPEC_CONFIG

    target_ref: TargetRef
    rules: list[Rule] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _kind(self) -> RouteTo:
        kinds = ROUTE_TO_KINDS | {TargetKind.MESH_EXTERNAL_SERVICE}
        if self.target_ref.kind not in kinds:
            fail_at(("targetRef", "kind"), "to[].targetRef.kind must be one of "
                                           f"{sorted(k.value for k in kinds)}")
        if self.target_ref.kind is TargetKind.MESH_EXTERNAL_SERVICE:
            for i, rule in enumerate(self.rules):
                if rule.default.backend_refs is not None:
                    fail_at(("rules", i, "default", "backendRefs"),
                            "a route to a MeshExternalService sends to it alone: "
                            "backendRefs are not allowed")
                for j, filt in enumerate(rule.default.filters or ()):
                    if filt.type is FilterType.REQUEST_MIRROR:
                        fail_at(("rules", i, "default", "filters", j, "type"),
                                "a route to a MeshExternalService sends to it alone: "
                                "RequestMirror is not allowed")
        return self


class MeshHTTPRouteSpec(PolicySpec):
    EXTERNAL_DESTINATIONS = True  # proxy.envoy.routes builds its rules on the VIP's routes

    to: list[RouteTo] | None = Field(None, max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshHTTPRoute",
    spec_model=MeshHTTPRouteSpec,
    scope=Scope.MESH,
    path="meshhttproutes",
    noun="meshhttproute",
    alias="mhr",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="HTTP request matching, filters and weighted backends",
)
