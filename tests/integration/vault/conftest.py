"""The vault CA backend tests' OpenBao: a real dev server (``tests/openbao.py``), one per
test module, with a PKI mount whose root is self-signed (``pki-payments``) and one whose CA
is an intermediate of it (``pki-corp``), a ``workloads`` role and the policies the tests'
tokens get. (The CA-rotation tests have their own ``bao`` in ``tests/integration``.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.vault.vault_env import CORP, PKI
from tests.openbao import OpenBao, OpenBaoUnavailable


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    try:
        server = OpenBao.start()
    except OpenBaoUnavailable as exc:
        pytest.fail(f"OpenBao is needed for these tests: {exc}")
    with server:
        server.enable_pki(PKI, common_name="Payments root")
        server.enable_intermediate_pki(CORP, PKI, common_name="Corp issuing CA")
        server.create_role(PKI, "workloads")
        server.write_policy("zones", server.pki_policy(PKI, "root/sign-intermediate"))
        server.write_policy("corp-zones", server.pki_policy(CORP, "root/sign-intermediate"))
        server.write_policy("issue", server.pki_policy(PKI, "sign/*"))
        server.write_policy("read-only", server.pki_policy(PKI))
        yield server

