"""Network addresses in resources: an IP literal or a DNS hostname, bounded."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

_HOST_RE = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?)"
                      r"(\.[a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?)*\.?$")


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOST_RE.match(value):
        raise PydanticCustomError("address", "expected an IP address or a hostname")
    return value


def _check_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise PydanticCustomError("address", "expected an IP address") from None
    return value


Address = Annotated[str, AfterValidator(_check_address)]
IPAddress = Annotated[str, AfterValidator(_check_ip)]
