"""The agent's errors: what went wrong, whose fault it is, and the exit code it ends in.

Every failure the agent expects ends the process with one ``error:`` line and an exit
code: 2 for a bad input (a flag, the Dataplane file, the token or CA file), 1 for a
refusal or a broken environment (the control plane rejected the token, Envoy could not
start). ``retryable`` errors are never shown to the user at startup as final: the agent
backs off and tries again (the control plane is down, a renewal failed).

gRPC errors are translated into these in ``proxy.agent.cp_client`` and nowhere else.
"""

from __future__ import annotations

from gossamer.errors import FieldError, GossamerError


class AgentError(GossamerError):
    """Base of the agent's errors; ``exit_code`` is what the process exits with."""

    exit_code = 1


class InputError(AgentError):
    """A flag or an input file that cannot work (caller's fault, exit 2)."""

    title = "invalid input"
    http_status = 400
    caller_fault = True
    exit_code = 2


class DataplaneFileError(InputError):
    """The Dataplane file does not template, parse or validate; ``field_errors`` say where."""

    def __init__(self, detail: str, field_errors: list[FieldError] | None = None) -> None:
        self.field_errors = list(field_errors or [])
        super().__init__(detail)

    def lines(self) -> list[str]:
        return [self.detail, *(f"  {e}" for e in self.field_errors)]


class ControlPlaneRefused(AgentError):
    """The zone CP answered and said no (a wrong or revoked token, a token for another
    mesh or service, a name claimed by another identity). Retrying cannot help."""

    title = "refused by the control plane"
    http_status = 403
    caller_fault = True

    def __init__(self, detail: str, code: str = "") -> None:
        super().__init__(detail)
        self.code = code


class ControlPlaneUnavailable(AgentError):
    """The zone CP could not be reached or the stream broke: back off and retry."""

    title = "control plane unavailable"
    http_status = 503
    retryable = True


class ControlPlaneNotVerified(ControlPlaneUnavailable):
    """The zone CP's certificate did not verify: it does not name the host in ``--cp``,
    or ``--cp-ca`` is not its CA. The detail names the address and the flag that fixes
    it. Still retried (a control plane restarted with the right certificate is picked up
    without restarting the agent), but the caller's to fix."""

    title = "control plane certificate not verified"
    caller_fault = True


class ControlPlaneProtocolError(AgentError):
    """The zone CP sent something the agent cannot use (a certificate that does not
    match the key, a session that does not start with ``Registered``)."""

    title = "control plane protocol error"
    http_status = 502
    retryable = True


class EnvoyCannotStart(AgentError):
    """Envoy exited right after its first start; ``log_tail`` holds its last log lines."""

    title = "Envoy cannot start"

    def __init__(self, detail: str, log_tail: list[str]) -> None:
        super().__init__(detail)
        self.log_tail = log_tail


class ResolverCannotStart(AgentError):
    """The ``.mesh`` resolver cannot listen on ``--dns-addr`` (taken by another sidecar,
    or port 53 without the right to bind it)."""

    title = "the DNS resolver cannot start"


class KeyGenerationFailed(AgentError):
    """The key generator child (``proxy.agent.keygen``) could not be started or did not
    answer as it should; a rotation tries again with a new child."""

    title = "key generation failed"
    http_status = 500
    retryable = True
