"""Policy matching and merging: which policies apply to a proxy and what they add up to.

Pure code (no I/O). Entry point: ``match_policies``; see ``matching`` for the model,
``selectors`` for targetRef selection and ordering, ``merge`` for field-by-field merging,
``sources`` for the first-match ``from[]`` source rules, ``destinations`` for the
services a proxy's outbounds can reach (the destinations worth matching) and ``index``
for looking up the policies that select a proxy instead of scanning the mesh's.
"""

from gossamer.policy.destinations import RouteBackends
from gossamer.policy.errors import PolicyMatchingError, TooManySourceRules
from gossamer.policy.index import (
    Candidates,
    MatchKey,
    PolicyIndex,
    PolicyKey,
    match_key,
    policy_key,
)
from gossamer.policy.matching import (
    InboundPolicies,
    KindPolicies,
    ProxyPolicies,
    match_policies,
)
from gossamer.policy.merge import MergedConf, PolicyRef, merge_confs, merge_data
from gossamer.policy.selectors import InboundKey, ProxyView, policy_order
from gossamer.policy.sources import FromRule, SourceSelector

__all__ = [
    "Candidates",
    "FromRule",
    "InboundKey",
    "InboundPolicies",
    "KindPolicies",
    "MatchKey",
    "MergedConf",
    "PolicyIndex",
    "PolicyKey",
    "PolicyMatchingError",
    "PolicyRef",
    "ProxyPolicies",
    "ProxyView",
    "RouteBackends",
    "SourceSelector",
    "TooManySourceRules",
    "match_key",
    "match_policies",
    "merge_confs",
    "merge_data",
    "policy_key",
    "policy_order",
]
