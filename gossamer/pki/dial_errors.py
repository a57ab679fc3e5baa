"""What a failed TLS verification toward a control plane means, in words that fix it.

gRPC reports a handshake that did not verify as ``UNAVAILABLE`` with details such as
"Hostname Verification Check failed" (the certificate does not name the host dialled) or
"CERTIFICATE_VERIFY_FAILED" (it is not signed by the CA given), beside every other reason
a dial fails. A zone dialling its global and an agent dialling its zone CP both pass the
details to ``verify_failure`` at their boundary (``zone_cp.sync_client``,
``proxy.agent.cp_client``) and, when it is one, report ``explain`` instead: the address
tried and the flag that fixes it. Pure: strings in, a string out.
"""

from __future__ import annotations

import enum

_HOSTNAME_MARKERS = ("Hostname Verification Check failed", "hostname mismatch",
                     "Hostname mismatch", "IP address mismatch")  # grpcio's, Python ssl's
_CA_MARKERS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed",
               "unable to get local issuer certificate", "self signed certificate",
               "self-signed certificate")


class VerifyFailure(enum.Enum):
    """Why the control plane's certificate did not verify."""

    HOSTNAME = "hostname"  # signed by the CA given, but does not name the host dialled
    UNTRUSTED = "untrusted"  # not signed by the CA given


def verify_failure(details: str) -> VerifyFailure | None:
    """The verification failure ``details`` (a gRPC status's or an SSL error's text)
    reports, or ``None`` when the dial failed for another reason."""
    if any(marker in details for marker in _HOSTNAME_MARKERS):
        return VerifyFailure.HOSTNAME
    if any(marker in details for marker in _CA_MARKERS):
        return VerifyFailure.UNTRUSTED
    return None


def explain(failure: VerifyFailure, target: str, host: str, ca_flag: str,
            ca_file: str | None) -> str:
    """The sentence for ``failure`` dialling ``target`` (``HOST:PORT``) by ``host``, with
    the CA given as ``ca_flag`` (``--cp-ca``, ``--global-ca``) from ``ca_file``."""
    if failure is VerifyFailure.HOSTNAME:
        return (f"the certificate of {target} does not name {host}: start that control "
                f"plane with --tls-host {host} (or call it by a name its certificate has)")
    given = f"{ca_flag} {ca_file}" if ca_file else ca_flag
    return (f"the certificate of {target} does not verify with {given}: give the CA of "
            f"that control plane (<its data-dir>/tls/ca.pem)")
