"""``install`` and ``uninstall``: the plan of ``proxy.redirect.ruleset`` carried out by ``nft``.

``install`` reads the table first and writes only when it differs from what is asked, so
a second install changes nothing (not even the rules' handles or counters); when it does
write, the old table is replaced in the same transaction, never flushed first.
``uninstall`` deletes the one table and nothing else, so the namespace's ruleset is what
it was before ``install``.
"""

from __future__ import annotations

from proxy.redirect import defaults
from proxy.redirect.ruleset import Plan, install_script, plan, table_ref, uninstall_script
from proxy.redirect.settings import RedirectSettings
from proxy.redirect.system import Nft


def install(settings: RedirectSettings, nft: Nft) -> Plan:
    """Make the namespace's table exactly ``render(settings)``; what was done."""
    action = plan(nft.list_table(table_ref(settings)), settings)
    if action is not Plan.KEEP:
        nft.apply(install_script(settings))
    return action


def uninstall(nft: Nft, table: str = defaults.TABLE_NAME) -> bool:
    """Delete our table; ``False`` when it was not there (nothing to do)."""
    ref = f"{defaults.TABLE_FAMILY} {table}"
    if nft.list_table(ref) is None:
        return False
    nft.apply(uninstall_script(table))
    return True

