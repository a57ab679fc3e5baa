"""The CLI's config file: the control planes it knows and which one is current.

Like a kubeconfig, the file lists named control planes (a "context" each) and names the
current one. It lives at ``$GOSSAMER_CONFIG`` or ``~/.config/gossamer/config.yaml``::

    currentContext: local
    controlPlanes:
    - name: local
      address: http://127.0.0.1:5681
      tokenFile: /home/me/.gossamer/global/admin-token   # read at each request
    - name: prod
      address: https://cp.example.com:5681
      token: eyJ...                                      # inline, when --token was used
      caFile: /etc/gossamer/ca.pem

The file may hold a token, so it is written with mode 0600 (its directory 0700) through a
temporary file renamed over the old one: a crash never leaves half a file behind.

``resolve_control_plane`` picks the control plane a command talks to: ``--context``
(or ``GOSSAMER_CONTEXT``) names one from the file; otherwise ``GOSSAMER_ADDRESS`` (with
``GOSSAMER_TOKEN_FILE`` and ``GOSSAMER_CA_FILE``) describes one ad hoc; otherwise the
file's current one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gossamer.errors import GossamerError

ENV_CONFIG = "GOSSAMER_CONFIG"
ENV_ADDRESS = "GOSSAMER_ADDRESS"
ENV_TOKEN_FILE = "GOSSAMER_TOKEN_FILE"
ENV_CA_FILE = "GOSSAMER_CA_FILE"
MAX_CONFIG_BYTES = 1 << 20
MAX_TOKEN_BYTES = 64 << 10
MAX_PATH_CHARS = 4096

ADD_HINT = ("run `gossamer config control-planes add --name NAME --address URL "
            "--token-file FILE` first")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


class ConfigError(GossamerError):
    """The config file, or a context in it, is missing, unreadable or malformed."""

    http_status = 400
    title = "configuration error"
    caller_fault = True


class ConfigFieldError(ConfigError):
    """One field of a control plane or of the file is wrong: ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _optional_text(field: str, value: object, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigFieldError(field, "expected a string")
    if len(value) > limit:
        raise ConfigFieldError(field, f"longer than {limit} characters")
    return value


def _check_address(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigFieldError("address", "expected a string")
    if len(value) > 2048:
        raise ConfigFieldError("address", "longer than 2048 characters")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("http", "https") or not rest.strip("/"):
        raise ConfigFieldError("address", "expected an http:// or https:// URL, "
                                          "like http://127.0.0.1:5681")
    return value.rstrip("/")


@dataclass(frozen=True)
class ControlPlane:
    """One named control plane: where it listens and how to prove we are its admin.

    A plain frozen record checked in ``__post_init__`` rather than a pydantic model: the
    CLI reads this at every start, and pydantic's import and schema build were a quarter
    of ``gossamer get``'s start-up (docs/benchmarks.md, "CLI start-up").
    """

    name: str
    address: str
    token_file: str | None = None
    token: str | None = None
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= 253:
            raise ConfigFieldError("name", "expected a name of 1 to 253 characters")
        if not _NAME.fullmatch(self.name):
            raise ConfigFieldError("name", "letters, digits, '_', '.' and '-' only, "
                                           "starting with a letter or a digit")
        object.__setattr__(self, "address", _check_address(self.address))
        _optional_text("tokenFile", self.token_file, MAX_PATH_CHARS)
        _optional_text("token", self.token, MAX_TOKEN_BYTES)
        _optional_text("caFile", self.ca_file, MAX_PATH_CHARS)

    @classmethod
    def from_document(cls, doc: object) -> ControlPlane:
        """A control plane from the file's mapping (camelCase keys, snake_case accepted)."""
        fields = _fields(doc, {"name": "name", "address": "address", "tokenFile": "token_file",
                               "token": "token", "caFile": "ca_file"})
        for required in ("name", "address"):
            if required not in fields:
                raise ConfigFieldError(required, "missing")
        return cls(**fields)

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "address": self.address}
        for key, value in (("tokenFile", self.token_file), ("token", self.token),
                           ("caFile", self.ca_file)):
            if value is not None:
                doc[key] = value
        return doc

    def read_token(self) -> str | None:
        """The bearer token: inline, or read from ``token_file`` now (it may be rotated)."""
        if self.token is not None:
            return self.token
        if self.token_file is None:
            return None
        try:
            with open(self.token_file, "rb") as f:
                raw = f.read(MAX_TOKEN_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {self.token_file}: "
                              f"{exc.strerror or exc}") from None
        if len(raw) > MAX_TOKEN_BYTES:
            raise ConfigError(f"the token file {self.token_file} is larger than 64 KiB")
        token = raw.decode("utf-8", errors="replace").strip()
        if not token:
            raise ConfigError(f"the token file {self.token_file} is empty")
        return token


def _fields(doc: object, names: Mapping[str, str]) -> dict[str, Any]:
    """``doc``'s keys mapped to attribute names; an unknown key is an error naming it."""
    if not isinstance(doc, Mapping):
        raise ConfigFieldError("(document)", "expected a mapping")
    accepted = {**names, **{attr: attr for attr in names.values()}}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        attr = accepted.get(key) if isinstance(key, str) else None
        if attr is None:
            raise ConfigFieldError(str(key), "unknown field")
        out[attr] = value
    return out


@dataclass(frozen=True)
class CliConfig:
    current_context: str | None = None
    control_planes: tuple[ControlPlane, ...] = ()

    @classmethod
    def from_document(cls, doc: object) -> CliConfig:
        fields = _fields(doc, {"currentContext": "current_context",
                               "controlPlanes": "control_planes"})
        current = _optional_text("currentContext", fields.get("current_context"), 253)
        raw = fields.get("control_planes") or ()
        if not isinstance(raw, (list, tuple)):
            raise ConfigFieldError("controlPlanes", "expected a list")
        planes = []
        for i, item in enumerate(raw):
            try:
                planes.append(ControlPlane.from_document(item))
            except ConfigFieldError as exc:
                raise ConfigFieldError(f"controlPlanes.{i}.{exc.field}", exc.message) from None
        return cls(current_context=current, control_planes=tuple(planes))

    def find(self, name: str) -> ControlPlane | None:
        return next((cp for cp in self.control_planes if cp.name == name), None)

    def current(self) -> ControlPlane | None:
        return self.find(self.current_context) if self.current_context else None

    def with_current(self, name: str) -> CliConfig:
        return dataclasses.replace(self, current_context=name)

    def with_control_plane(self, cp: ControlPlane) -> CliConfig:
        """Add ``cp`` or replace the one of the same name; the first one becomes current."""
        if self.find(cp.name) is None:
            planes = (*self.control_planes, cp)
        else:
            planes = tuple(cp if c.name == cp.name else c for c in self.control_planes)
        current = self.current_context if self.current() is not None else cp.name
        return CliConfig(current_context=current, control_planes=planes)

    def without_control_plane(self, name: str) -> CliConfig:
        planes = tuple(c for c in self.control_planes if c.name != name)
        current = None if self.current_context == name else self.current_context
        return CliConfig(current_context=current, control_planes=planes)

    def to_document(self, redact: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.current_context is not None:
            doc["currentContext"] = self.current_context
        doc["controlPlanes"] = [cp.to_document() for cp in self.control_planes]
        if redact:
            for cp in doc["controlPlanes"]:
                if "token" in cp:
                    cp["token"] = "REDACTED"
        return doc


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "gossamer" / "config.yaml"


def load_config(path: Path) -> CliConfig:
    """The config at ``path``; an absent file is an empty config."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return CliConfig()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"the config file {path} is larger than 1 MiB")
    try:
        doc = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"the config file {path} is not valid YAML: {exc}") from None
    try:
        return CliConfig.from_document(doc)
    except ConfigFieldError as exc:
        raise ConfigError(f"the config file {path} is malformed: {exc}") from None


def save_config(path: Path, config: CliConfig) -> None:
    """Write ``config`` to ``path`` atomically with mode 0600 (the directory 0700)."""
    import tempfile  # writing is rare: `gossamer config` only, not every command's start

    text = yaml.safe_dump(config.to_document(), sort_keys=False, default_flow_style=False)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write the config file {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise ConfigError(f"cannot write the config file {path}: {exc.strerror or exc}") from None


def resolve_control_plane(context: str | None, env: Mapping[str, str] | None = None,
                          path: Path | None = None) -> ControlPlane:
    """The control plane this invocation talks to (see the module docstring for the order)."""
    env = os.environ if env is None else env
    path = path or config_path(env)
    if context is None and env.get(ENV_ADDRESS):
        try:
            return ControlPlane(name="env", address=env[ENV_ADDRESS],
                                token_file=env.get(ENV_TOKEN_FILE) or None,
                                ca_file=env.get(ENV_CA_FILE) or None)
        except ConfigFieldError as exc:
            raise ConfigError(f"{ENV_ADDRESS}={env[ENV_ADDRESS]!r}: {exc.message}") from None
    config = load_config(path)
    if context is not None:
        found = config.find(context)
        if found is None:
            known = ", ".join(c.name for c in config.control_planes) or "none"
            raise ConfigError(f"no control plane named {context!r} in {path} (known: {known})")
        return found
    current = config.current()
    if current is None:
        raise ConfigError(f"no control plane is configured: {ADD_HINT}, "
                          f"or set {ENV_ADDRESS} and {ENV_TOKEN_FILE}")
    return current
