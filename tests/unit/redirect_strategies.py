"""Hypothesis strategies for ``RedirectSettings``: any combination of the install flags.

Shared by the unit test (``nft -c`` accepts every rendered script) and the namespace
test (the kernel lists back exactly the rendered table).
"""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from proxy.redirect.settings import RedirectSettings

PORTS = st.integers(1, 65535)
NETS = st.builds(lambda addr, prefix: ipaddress.ip_network(f"{addr}/{prefix}", strict=False),
                 st.ip_addresses(v=4), st.integers(0, 32))
SETTINGS = st.builds(
    RedirectSettings,
    exclude_uids=st.lists(st.integers(0, 2**32 - 2), min_size=1, max_size=4).map(tuple),
    outbound_port=st.sampled_from([15001, 1]),
    inbound_port=st.sampled_from([None, 15006, 65535]),
    dns_port=st.sampled_from([None, 15053, 5353]),
    exclude_outbound_ports=st.lists(PORTS, max_size=5).map(tuple),
    exclude_outbound_cidrs=st.lists(NETS, max_size=5).map(tuple),
    exclude_inbound_ports=st.lists(PORTS, max_size=5).map(tuple),
)
