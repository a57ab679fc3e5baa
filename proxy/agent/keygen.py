"""Key generation and certificate checks for the agent, run as a short-lived child
process: ``python -m proxy.agent.keygen COMMON_NAME [KEY_TYPE]``.

Why a child: ``cryptography``'s Rust bindings and their allocations are about a sixth of
a sidecar agent's memory, and the agent needs them only for a moment at each rotation
(issue 17). The long-running agent never imports this module; each rotation runs it once.

The conversation, one JSON object a line on stdin/stdout (``proxy.agent.keys`` is the
other end):

1. the child makes a key and writes ``{"csr": PEM}``;
2. it reads ``{"chain": PEM, "trust": PEM, "expires_at": ISO, "now": ISO}``: what the
   control plane signed and the agent's clock (end of input instead: the signing
   failed; the child exits and the key is gone);
3. it checks that the chain parses, is for its key and has not expired, that the trust
   bundle parses, and writes ``{"key": PEM, "not_after": ISO, "uris": [...]}``, or
   ``{"error": why}`` (the control plane's fault) without the key, and exits.

The key leaves the child only on its stdout, a pipe to the agent that owns it, and only
for a certificate that matches it. ``new_request`` and ``accept`` are the pure steps,
also used in process by tests and by the CLI's checks.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gossamer.pki.certs import KeyPair, PrivateKey, new_csr, new_key, uri_sans
from proxy.agent.errors import ControlPlaneProtocolError
from proxy.agent.identity import Identity, SignedCertificate, check_bundle

KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-4096")


def new_request(common_name: str, key_type: str = "ecdsa-p256") -> tuple[PrivateKey, bytes]:
    """A fresh key and a PEM CSR for it."""
    key = new_key(key_type)
    csr = new_csr(key, common_name)
    return key, csr.public_bytes(serialization.Encoding.PEM)


def matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether ``key`` is the private key of ``cert``."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki))


def accept(key: PrivateKey, signed: SignedCertificate, now: dt.datetime) -> Identity:
    """Check the CP's answer and pair it with the key (``ControlPlaneProtocolError`` if
    the chain does not parse, is for another key, or has already expired)."""
    try:
        chain = x509.load_pem_x509_certificates(signed.chain_pem)
    except ValueError:
        raise ControlPlaneProtocolError("the control plane sent a certificate chain that "
                                        "does not parse") from None
    if not matches(chain[0], key):
        raise ControlPlaneProtocolError("the control plane signed a certificate for another key")
    if chain[0].not_valid_after_utc <= now:
        raise ControlPlaneProtocolError("the control plane sent an expired certificate")
    if signed.trust_bundle_pem:
        check_bundle(signed.trust_bundle_pem)
    return Identity(key=KeyPair(chain[0], key).key_pem(), chain_pem=signed.chain_pem,
                    received_at=now, not_after=chain[0].not_valid_after_utc,
                    uris=tuple(uri_sans(chain[0])))


def answer(key: PrivateKey, line: str) -> dict[str, Any]:
    """Step 3 for one input line: the key and what the agent keeps, or the error."""
    try:
        msg = json.loads(line)
        signed = SignedCertificate(msg["chain"].encode(), msg["trust"].encode(),
                                   dt.datetime.fromisoformat(msg["expires_at"]))
        ident = accept(key, signed, dt.datetime.fromisoformat(msg["now"]))
    except ControlPlaneProtocolError as exc:
        return {"error": exc.detail}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {"error": "the agent sent the key generator an input it cannot read"}
    return {"key": ident.key.decode(), "not_after": ident.not_after.isoformat(),
            "uris": list(ident.uris)}


def converse(common_name: str, key_type: str, stdin: TextIO, stdout: TextIO) -> int:
    key, csr = new_request(common_name, key_type)
    stdout.write(json.dumps({"csr": csr.decode()}) + "\n")
    stdout.flush()
    line = stdin.readline()
    if not line:
        return 0  # no certificate came: the key dies with this process
    stdout.write(json.dumps(answer(key, line)) + "\n")
    stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2 or (len(argv) == 2 and argv[1] not in KEY_TYPES):
        print("usage: python -m proxy.agent.keygen COMMON_NAME [" + "|".join(KEY_TYPES)
              + "]", file=sys.stderr)
        return 2
    return converse(argv[0], argv[1] if len(argv) == 2 else KEY_TYPES[0],
                    sys.stdin, sys.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
