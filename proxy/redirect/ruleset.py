"""The nftables ruleset of the transparent proxy, rendered from ``RedirectSettings`` (pure).

Theory of operation. One table of our own, ``inet gossamer``, holds everything, so
``uninstall`` is one ``delete table`` and no other table of the namespace (Docker's, a
firewall's) is read or changed. Two NAT base chains:

- ``output`` (locally generated, priority -100): the sidecar's uids pass first (Envoy's
  upstream connections and the resolver's forwarded queries, which would loop); then the
  excluded destinations; then DNS, UDP and TCP port 53 to any server, is redirected to the
  resolver; then loopback destinations pass (the workload's own local services); then
  every other TCP connection is redirected to the outbound capture listener.
  ``redirect`` in ``output`` rewrites the destination to 127.0.0.1 and conntrack keeps
  the original one, which Envoy's ``original_dst`` filter reads (``SO_ORIGINAL_DST``).
- ``prerouting`` (arriving from outside, ``dstnat``): loopback passes, the excluded local
  ports pass, every other TCP connection goes to the inbound capture listener. In
  prerouting, ``redirect`` rewrites to the receiving interface's primary address, not to
  127.0.0.1: the inbound capture listener binds the wildcard (``defaults.INBOUND_ADDRESS``).

Only IPv4 is redirected (each chain lets other families pass first): the capture
listeners are on 127.0.0.1. Replies need no rule: conntrack reverses the NAT.

The text is exactly what ``nft list table inet gossamer`` prints back (its tabs, its
sorted sets, one element without braces), so "installed" is a string comparison: that is
how ``install`` is idempotent and how the tests check the kernel holds what was asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from proxy.redirect import defaults
from proxy.redirect.settings import RedirectSettings

DNS_SERVER_PORT = 53
LOOPBACK = "127.0.0.0/8"


class Plan(Enum):
    """What ``install`` does, given what the namespace holds."""

    CREATE = "create"    # no table of ours yet
    REPLACE = "replace"  # ours, with other rules (other flags, an older version)
    KEEP = "keep"        # exactly the rules asked for: nothing to do


def table_ref(settings: RedirectSettings) -> str:
    return f"{defaults.TABLE_FAMILY} {settings.table}"


def _set(values: Sequence[object]) -> str:
    """An nft value or anonymous set, as ``nft list`` prints it."""
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _rule(match: str, verdict: str, comment: str) -> str:
    return f'\t\t{match} {verdict} comment "{comment}"'


def output_rules(s: RedirectSettings) -> list[str]:
    """The ``output`` chain: what the workload sends."""
    rules = [
        _rule("meta nfproto != ipv4", "return", "only IPv4 is captured"),
        _rule(f"meta skuid {_set(s.exclude_uids)}", "return", "the sidecar's own traffic"),
    ]
    if s.exclude_outbound_cidrs:
        nets = [str(n.network_address) if n.prefixlen == 32 else str(n)
                for n in s.exclude_outbound_cidrs]
        rules.append(_rule(f"ip daddr {_set(nets)}", "return", "--exclude-outbound-cidrs"))
    if s.exclude_outbound_ports:
        rules.append(_rule(f"meta l4proto {{ tcp, udp }} th dport "
                           f"{_set(s.exclude_outbound_ports)}", "return",
                           "--exclude-outbound-ports"))
    if s.dns_port is not None:
        rules.append(_rule(f"meta l4proto {{ tcp, udp }} th dport {DNS_SERVER_PORT}",
                           f"redirect to :{s.dns_port}", "DNS, any server: the resolver"))
    rules += [
        _rule(f"ip daddr {LOOPBACK}", "return", "loopback: the workload's local services"),
        _rule("meta l4proto tcp", f"redirect to :{s.outbound_port}",
              "outbound TCP: Envoy's capture listener"),
    ]
    return rules


def prerouting_rules(s: RedirectSettings, inbound_port: int) -> list[str]:
    """The ``prerouting`` chain: what arrives for the workload."""
    rules = [
        _rule("meta nfproto != ipv4", "return", "only IPv4 is captured"),
        _rule('iifname "lo"', "return", "loopback"),
    ]
    if s.exclude_inbound_ports:
        rules.append(_rule(f"tcp dport {_set(s.exclude_inbound_ports)}", "return",
                           "--exclude-inbound-ports"))
    rules.append(_rule("meta l4proto tcp", f"redirect to :{inbound_port}",
                       "inbound TCP: Envoy's capture listener"))
    return rules


def _chain(name: str, hook: str, priority: str, rules: list[str]) -> list[str]:
    return [f"\tchain {name} {{",
            f"\t\ttype nat hook {hook} priority {priority}; policy accept;",
            *rules, "\t}"]


def render(settings: RedirectSettings) -> str:
    """The table, in ``nft list table`` form (which ``nft -f`` also reads)."""
    chains = [_chain("output", "output", "-100", output_rules(settings))]
    if settings.inbound_port is not None:
        chains.append(_chain("prerouting", "prerouting", "dstnat",
                             prerouting_rules(settings, settings.inbound_port)))
    body = [line for i, chain in enumerate(chains) for line in ([""] if i else []) + chain]
    return "\n".join([f"table {table_ref(settings)} {{", *body, "}"]) + "\n"


def install_script(settings: RedirectSettings) -> str:
    """``nft -f`` input that makes the table exactly ``render(settings)`` in one atomic
    transaction: declaring the table first makes the ``delete`` valid when it is absent."""
    ref = table_ref(settings)
    return f"table {ref}\ndelete table {ref}\n{render(settings)}"


def uninstall_script(table: str = defaults.TABLE_NAME) -> str:
    """``nft -f`` input that removes our table and nothing else."""
    return f"delete table {defaults.TABLE_FAMILY} {table}\n"


def plan(current: str | None, settings: RedirectSettings) -> Plan:
    """``current`` is ``nft list table``'s output, ``None`` when the table is absent."""
    if current is None:
        return Plan.CREATE
    return Plan.KEEP if current == render(settings) else Plan.REPLACE
