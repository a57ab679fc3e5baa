"""A small synchronous client for the control-plane HTTP API (docs/api.md).

``ApiClient`` is built from one ``ControlPlane`` (address, bearer token, CA file) and
turns everything that can go wrong on the wire into ``gossamer.errors`` exceptions at
this boundary, so commands never see the transport's own exceptions:

- an error answer (the JSON problem shape ``{status, title, detail, fieldErrors}``)
  becomes the matching ``GossamerError`` subclass, with its field errors;
- a refused connection, a TLS failure or a timeout becomes ``ControlPlaneUnreachable``
  naming the address;
- an answer that is not the JSON the contract promises becomes ``UnexpectedAnswer``.

The transport is injectable (``cli.http_wire.Transport``; unit tests plug a fake in).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from cli.config import ENV_CA_FILE, ConfigError, ControlPlane
from cli.http_wire import HttpRequest, HttpResponse, StdlibTransport, Timeouts, Transport
from gossamer import __version__
from gossamer.errors import (
    AlreadyExists,
    Conflict,
    FieldError,
    Forbidden,
    GossamerError,
    InvalidResource,
    NotFound,
    RevisionCompacted,
    StoreUnavailable,
    Unauthorized,
)
from gossamer.model.kind_index import KindName

DEFAULT_TIMEOUT = Timeouts(connect=5.0, read=60.0)
PAGE_SIZE = 500

_BY_STATUS: dict[int, type[GossamerError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: RevisionCompacted,
    503: StoreUnavailable,
}


class ControlPlaneUnreachable(GossamerError):
    """No answer: connection refused, DNS, TLS verification, or a timeout."""

    http_status = 503
    title = "control plane unreachable"
    retryable = True


class UnexpectedAnswer(GossamerError):
    """The control plane answered, but not with what docs/api.md promises."""

    http_status = 502
    title = "unexpected answer"


class ServerError(GossamerError):
    """An error answer with a status no more specific class covers (500, 502...)."""

    def __init__(self, status: int, title: str, detail: str,
                 field_errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.http_status = status
        self.title = title
        self.field_errors = list(field_errors or [])


def collection_path(desc: KindName, mesh: str | None) -> str:
    """``/meshes/m/meshtimeouts`` in one mesh, ``/meshtimeouts`` across meshes or global."""
    if desc.mesh_scoped and mesh is not None:
        return f"/meshes/{quote(mesh, safe='')}/{desc.path}"
    return f"/{desc.path}"


def resource_path(desc: KindName, mesh: str | None, name: str) -> str:
    return f"{collection_path(desc, mesh)}/{quote(name, safe='')}"


def _field_errors(raw: Any) -> list[FieldError]:
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        if isinstance(item, Mapping):
            out.append(FieldError(str(item.get("field", "")), str(item.get("message", ""))))
    return out


def _fastapi_errors(raw: list[Any]) -> list[FieldError]:
    """FastAPI's own 422 shape, in case a request never reached the contract's handlers."""
    out = []
    for item in raw:
        if isinstance(item, Mapping):
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            out.append(FieldError(loc, str(item.get("msg", ""))))
    return out


def error_from_response(resp: HttpResponse) -> GossamerError:
    """The ``GossamerError`` an error answer stands for."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, Mapping):
        text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
        detail = f"HTTP {resp.status} {resp.reason}" + (f": {text}" if text else "")
        return ServerError(resp.status, resp.reason, detail)
    title = str(body.get("title") or resp.reason)
    raw_detail = body.get("detail")
    errors = _field_errors(body.get("fieldErrors"))
    if isinstance(raw_detail, list):
        errors, raw_detail = errors or _fastapi_errors(raw_detail), None
    detail = str(raw_detail or title or f"HTTP {resp.status}")
    status = resp.status
    if status in (400, 422):
        # The server's detail already ends with the joined field errors; strip them so
        # InvalidResource (which appends them again) does not say everything twice.
        joined = "; ".join(str(e) for e in errors)
        if errors and detail.endswith(": " + joined):
            detail = detail[: -len(joined) - 2]
        return InvalidResource(detail, errors)
    if status == 409 and title == AlreadyExists.title:
        return AlreadyExists(detail)
    cls = _BY_STATUS.get(status)
    if cls is None or errors:
        return ServerError(status, title, detail, errors)
    return cls(detail)


@contextlib.contextmanager
def _translate_transport_errors(cp: ControlPlane) -> Iterator[None]:
    base_url = cp.address
    try:
        yield
    except TimeoutError:
        raise ControlPlaneUnreachable(
            f"the control plane at {base_url} did not answer in time") from None
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, http.client.InvalidURL):
            raise ConfigError(f"invalid control plane address {base_url}: {exc}") from None
        reason = str(exc) or type(exc).__name__
        raise ControlPlaneUnreachable(
            f"cannot reach the control plane at {base_url}: {reason}{tls_hint(cp, exc)}"
        ) from None
    except ValueError as exc:  # urlsplit's refusal of a port out of range, for one
        raise ConfigError(f"invalid control plane address {base_url}: {exc}") from None


def tls_hint(cp: ControlPlane, exc: Exception) -> str:
    """What to do when TLS is why a request failed: the fix, in the user's terms."""
    text = str(exc)
    readd = (f"set {ENV_CA_FILE}" if cp.name == "env" else
             f"run `gossamer config control-planes add {cp.name} --address "
             f"{cp.address} --ca-file FILE --overwrite`")
    if "CERTIFICATE_VERIFY_FAILED" in text or "IP address mismatch" in text:
        if cp.ca_file is None:
            return (f"; its certificate is not signed by a CA this system trusts: {readd} "
                    f"with the control plane's CA (its DATA_DIR/tls/ca.pem)")
        return (f"; its certificate does not verify with the CA file {cp.ca_file} or does "
                f"not name this address: check the CA file (the control plane's "
                f"DATA_DIR/tls/ca.pem) and add the name it is reached by with --tls-host")
    if cp.address.startswith("http://") and isinstance(
            exc, (http.client.HTTPException, ConnectionResetError)):
        return ("; if its API speaks TLS (it does when listening beyond loopback), use an "
                "https:// address and its CA file")
    if cp.address.startswith("https://") and ("WRONG_VERSION_NUMBER" in text
                                              or "record layer failure" in text):
        return "; it does not speak TLS: use an http:// address"
    return ""


def _verify(cp: ControlPlane) -> ssl.SSLContext | None:
    """TLS is verified: against ``ca_file`` when given, else the system's trusted CAs."""
    if not cp.address.startswith("https://"):
        return None
    try:
        return ssl.create_default_context(cafile=cp.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the CA file {cp.ca_file}: {exc}") from None


STALE_HEADER = "gossamer-stale"  # as the transport gives header names: lower case


class ApiClient:
    """Calls one control plane; every method returns decoded JSON or raises."""

    def __init__(self, cp: ControlPlane, *, transport: Transport | None = None,
                 timeout: Timeouts = DEFAULT_TIMEOUT) -> None:
        self.base_url = cp.address
        self._cp = cp
        self._headers = {"User-Agent": f"gossamer-cli/{__version__}",
                         "Accept": "application/json"}
        token = cp.read_token()
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._http = transport or StdlibTransport(_verify(cp), timeout)
        # The last ``Gossamer-Stale`` the control plane sent: it answered a read from
        # its cache because its store does not answer (why; since when).
        self.stale: str | None = None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None) -> Any:
        url = self.base_url + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        with _translate_transport_errors(self._cp):
            resp = self._http.send(HttpRequest(method, url, self._headers, data))
        stale = resp.headers.get(STALE_HEADER)
        if stale:
            self.stale = " ".join(stale.split())
        if resp.status >= 400:
            raise error_from_response(resp)
        try:
            return resp.json()
        except ValueError:
            raise UnexpectedAnswer(f"the control plane at {self.base_url} answered "
                                   f"{method} {path} with something other than JSON") from None

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body=body)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def get_one(self, path: str) -> dict[str, Any]:
        doc = self.get(path)
        if not isinstance(doc, dict):
            raise UnexpectedAnswer(f"GET {path}: expected a JSON object")
        return doc

    def list_all(self, path: str, labels: str | None = None,
                 page_size: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """Every item of a collection, following ``next`` tokens page after page."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"size": page_size}
            if token is not None:
                params["offset"] = token
            if labels:
                params["labels"] = labels
            page = self.get(path, params)
            if not isinstance(page, Mapping) or not isinstance(page.get("items"), list):
                raise UnexpectedAnswer(f"GET {path}: expected {{\"items\": [...]}}")
            items.extend(i for i in page["items"] if isinstance(i, dict))
            nxt = page.get("next")
            if not nxt:
                return items
            token = str(nxt)
            if token in seen:
                raise UnexpectedAnswer(f"GET {path}: the page token {token!r} came back twice")
            seen.add(token)

    def apply(self, documents: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
        answer = self.post("/_apply", {"documents": documents, "dryRun": dry_run})
        results = answer.get("results") if isinstance(answer, Mapping) else None
        if not isinstance(results, list):
            raise UnexpectedAnswer("POST /_apply: expected {\"results\": [...]}")
        return [r for r in results if isinstance(r, dict)]
