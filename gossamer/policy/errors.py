"""Errors of policy matching: the policies, not the caller's code, are at fault."""

from __future__ import annotations

from gossamer.errors import GossamerError


class PolicyMatchingError(GossamerError):
    """The policies that apply to a proxy cannot be turned into one configuration."""

    http_status = 422
    title = "policies cannot be matched"
    caller_fault = True
    retryable = False


class TooManySourceRules(PolicyMatchingError):
    """``from[]`` selectors overlap in so many ways that the rule list would explode."""

    title = "too many overlapping from[] source selectors"
