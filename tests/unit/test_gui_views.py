"""The GUI's pure parts: the sign-in cookie (``gossamer.gui.session``) and the views it
shows beyond the generic API (``gossamer.gui.views``), on parsed resources, no server."""

from __future__ import annotations

from typing import Any

from gossamer.gui import views
from gossamer.gui.session import GuiSessions, cookie_values, is_static
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from tests.builders import dataplane

NOW = 1_800_000_000.0


def _policy(doc: dict[str, Any]) -> Resource:
    return parse_document({"mesh": "default", **doc})


def _mtp(name: str, target: dict[str, Any], source: dict[str, Any], action: str) -> Resource:
    return _policy({"type": "MeshTrafficPermission", "name": name, "spec": {
        "targetRef": target, "from": [{"targetRef": source, "default": {"action": action}}]}})


def _headers(sessions: GuiSessions, value: str, gui: bool = True) -> dict[bytes, bytes]:
    headers = {b"cookie": f"other=1; {sessions.cookie_name}={value}".encode()}
    if gui:
        headers[b"x-gossamer-gui"] = b"1"
    return headers


def test_the_cookie_authorizes_a_gui_read_until_it_expires_and_nothing_else() -> None:
    sessions = GuiSessions("admin-token-of-the-global", lifetime=600)
    value = sessions.issue(NOW)
    assert "admin-token" not in value
    assert sessions.authorizes("GET", _headers(sessions, value), NOW + 1)
    assert sessions.authorizes("HEAD", _headers(sessions, value), NOW + 1)
    assert not sessions.authorizes("GET", _headers(sessions, value, gui=False), NOW + 1)
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        assert not sessions.authorizes(method, _headers(sessions, value), NOW + 1)
    assert not sessions.authorizes("GET", _headers(sessions, value), NOW + 600)


def test_a_forged_or_foreign_cookie_is_refused() -> None:
    sessions = GuiSessions("token-a")
    value = sessions.issue(NOW)
    expiry, _, mac = value.partition(".")
    later = f"{int(expiry) + 3600}.{mac}"  # the expiry pushed out, same MAC
    assert not sessions.authorizes("GET", _headers(sessions, later), NOW)
    for bad in ("", ".", "abc.def", f"{expiry}.", f"-1.{mac}"):
        assert not sessions.valid(bad, NOW)
    other = GuiSessions("token-b")  # another control plane: another name and key
    assert other.cookie_name != sessions.cookie_name
    assert not other.valid(value, NOW)


def test_set_cookie_is_httponly_strict_and_secure_on_tls() -> None:
    sessions = GuiSessions("t")
    plain = sessions.set_cookie("v", secure=False)
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain
    assert "; Secure" in sessions.set_cookie("v", secure=True)
    assert "Max-Age=0" in sessions.clear_cookie(secure=False)


def test_cookie_header_parsing_keeps_the_first_of_a_name() -> None:
    assert cookie_values("a=1; b = 2;c=3; a=9; junk") == {"a": "1", "b": "2", "c": "3"}


def test_only_the_guis_own_files_are_public() -> None:
    for path in ("/gui", "/gui/", "/gui/static/app.js", "/gui/signout"):
        assert is_static(path), path
    for path in ("/gui/session", "/gui/static/", "/gui/static/a/b.js", "/gui/static/..",
                 "/meshes", "/gui/api"):
        assert not is_static(path), path


def test_a_policy_selects_the_dataplanes_of_its_target_and_zone() -> None:
    web = dataplane("web-1", "web")
    backend = dataplane("backend-1", "backend",
                        labels={"gossamer.io/zone": "east",
                                "gossamer.io/display-name": "backend-1"})
    other_mesh = dataplane("backend-9", "backend", mesh="other")
    timeout = _policy({"type": "MeshTimeout", "name": "t", "spec": {
        "targetRef": {"kind": "MeshService", "name": "backend"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "3s"}}]}})
    proxies = views.proxy_views([web, backend, other_mesh], local_zone="")
    found = views.selected_dataplanes(timeout, proxies)
    assert found == [{"name": "backend-1", "zone": "east"}]
    everyone = _policy({"type": "MeshTimeout", "name": "all", "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "3s"}}]}})
    in_west = views.proxy_views([web, backend], "west")
    assert [d["name"] for d in views.selected_dataplanes(everyone, in_west)] \
        == ["backend-1", "web-1"]


def test_matched_policies_name_the_place_the_conf_and_who_made_it() -> None:
    web = dataplane("web-1", "web", outbounds=[{"port": 9000,
                                                "tags": {"gossamer.io/service": "backend"}}])
    wide = _policy({"type": "MeshTimeout", "name": "wide", "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "3s"}}]}})
    narrow = _policy({"type": "MeshTimeout", "name": "narrow", "spec": {
        "targetRef": {"kind": "MeshService", "name": "web"},
        "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                "default": {"connectionTimeout": "7s"}}]}})
    allow = _mtp("allow", {"kind": "Mesh"}, {"kind": "MeshService", "name": "api"}, "Allow")
    matched = views.matched_json(web, [narrow, wide, allow], "west")
    kinds = {k["kind"]: k["entries"] for k in matched["kinds"]}
    to_backend = next(e for e in kinds["MeshTimeout"] if e["target"] == "to backend")
    assert to_backend["conf"] == {"connectionTimeout": "7s"}
    assert to_backend["policies"] == ["wide", "narrow"]  # the last one won
    inbound = kinds["MeshTrafficPermission"][0]
    assert inbound["target"] == "inbound :18080 from gossamer.io/service=api"
    assert inbound["conf"] == {"action": "Allow"}
    assert matched["zone"] == "west"


def test_who_may_call_is_the_first_matching_rule_and_deny_without_one() -> None:
    backends = [dataplane("backend-1", "backend"), dataplane("backend-2", "backend")]
    web_only = _mtp("web", {"kind": "MeshService", "name": "backend"},
                    {"kind": "MeshService", "name": "web"}, "Allow")
    one = _mtp("one", {"kind": "Dataplane", "name": "backend-2"},
               {"kind": "MeshService", "name": "api"}, "Allow")
    shadow = _mtp("shadow", {"kind": "MeshService", "name": "backend"},
                  {"kind": "MeshService", "name": "batch"}, "AllowWithShadowDeny")
    answer = views.callers_json("default", "backend", backends, [web_only, one, shadow],
                                ["api", "backend", "batch", "web"], local_zone="east")
    rows = {r["service"]: r for r in answer["callers"]}
    assert answer["instances"] == 2
    assert rows["web"]["action"] == "Allow" and rows["web"]["policies"] == ["web"]
    assert rows["batch"]["action"] == "AllowWithShadowDeny"
    assert rows["api"]["action"] == "Mixed"  # only backend-2 lets api in
    assert rows["backend"]["action"] == "Deny" and rows["backend"]["reason"] == \
        views.NO_PERMISSION


def test_services_of_a_mesh_come_from_dataplanes_and_ingresses() -> None:
    ingress = parse_document({"type": "ZoneIngress", "name": "east-ingress", "zone": "east",
                              "networking": {"address": "10.0.0.1", "port": 10001},
                              "availableServices": [
                                  {"mesh": "default", "instances": 1,
                                   "tags": {"gossamer.io/service": "remote"}},
                                  {"mesh": "other", "instances": 1,
                                   "tags": {"gossamer.io/service": "elsewhere"}}]})
    found = views.mesh_services("default", [dataplane("a", "web"), dataplane("b", "web")],
                                [ingress])
    assert found == ["remote", "web"]
