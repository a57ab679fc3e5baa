"""The transparent proxy's nftables ruleset, rendered from settings (``proxy.redirect``).

Golden text for the defaults and for every option at once; the flags' parsing and its
one-line errors; the install plan. Hypothesis draws option combinations and ``nft -c``
(the real program, checking against the kernel without committing) must accept each
install script: skipped loudly without root or ``nft``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from cli.main import main
from proxy.redirect import defaults
from proxy.redirect.errors import ProgramMissing
from proxy.redirect.ruleset import Plan, install_script, plan, render, uninstall_script
from proxy.redirect.settings import RedirectSettings, parse_cidr, parse_port, parse_uid
from proxy.redirect.system import find_program
from tests.unit.redirect_strategies import SETTINGS

DEFAULT_TABLE = """\
table inet gossamer {
	chain output {
		type nat hook output priority -100; policy accept;
		meta nfproto != ipv4 return comment "only IPv4 is captured"
		meta skuid 999 return comment "the sidecar's own traffic"
		meta l4proto { tcp, udp } th dport 53 redirect to :15053 comment "DNS, any server: the resolver"
		ip daddr 127.0.0.0/8 return comment "loopback: the workload's local services"
		meta l4proto tcp redirect to :15001 comment "outbound TCP: Envoy's capture listener"
	}

	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		meta nfproto != ipv4 return comment "only IPv4 is captured"
		iifname "lo" return comment "loopback"
		meta l4proto tcp redirect to :15006 comment "inbound TCP: Envoy's capture listener"
	}
}
"""  # noqa: E501

EVERY_OPTION = """\
table inet gossamer {
	chain output {
		type nat hook output priority -100; policy accept;
		meta nfproto != ipv4 return comment "only IPv4 is captured"
		meta skuid { 0, 999 } return comment "the sidecar's own traffic"
		ip daddr { 10.0.0.0/8, 192.0.2.7 } return comment "--exclude-outbound-cidrs"
		meta l4proto { tcp, udp } th dport { 22, 5432 } return comment "--exclude-outbound-ports"
		meta l4proto { tcp, udp } th dport 53 redirect to :5353 comment "DNS, any server: the resolver"
		ip daddr 127.0.0.0/8 return comment "loopback: the workload's local services"
		meta l4proto tcp redirect to :16001 comment "outbound TCP: Envoy's capture listener"
	}

	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		meta nfproto != ipv4 return comment "only IPv4 is captured"
		iifname "lo" return comment "loopback"
		tcp dport 22 return comment "--exclude-inbound-ports"
		meta l4proto tcp redirect to :16006 comment "inbound TCP: Envoy's capture listener"
	}
}
"""  # noqa: E501


def test_the_defaults_render_the_golden_table() -> None:
    assert render(RedirectSettings(exclude_uids=(999,))) == DEFAULT_TABLE


def test_every_option_renders_sorted_deduplicated_and_collapsed() -> None:
    asked = RedirectSettings(
        exclude_uids=(999, 0, 999), outbound_port=16001, inbound_port=16006, dns_port=5353,
        exclude_outbound_ports=(5432, 22, 22), exclude_inbound_ports=(22,),
        exclude_outbound_cidrs=(parse_cidr("192.0.2.7"), parse_cidr("10.1.0.0/16"),
                                parse_cidr("10.0.0.0/8")))
    assert render(asked) == EVERY_OPTION


def test_no_dns_and_no_inbound_leave_those_rules_out() -> None:
    text = render(RedirectSettings(exclude_uids=(1,), dns_port=None, inbound_port=None))
    assert "th dport 53" not in text and "prerouting" not in text
    assert "redirect to :15001" in text


def test_install_replaces_the_table_atomically_and_uninstall_deletes_only_it() -> None:
    asked = RedirectSettings(exclude_uids=(999,))
    assert install_script(asked) == ("table inet gossamer\ndelete table inet gossamer\n"
                                     + DEFAULT_TABLE)
    assert uninstall_script() == "delete table inet gossamer\n"


def test_the_plan_keeps_an_identical_table_and_replaces_any_other() -> None:
    asked = RedirectSettings(exclude_uids=(999,))
    assert plan(None, asked) is Plan.CREATE
    assert plan(DEFAULT_TABLE, asked) is Plan.KEEP
    assert plan(DEFAULT_TABLE.replace("15001", "15002"), asked) is Plan.REPLACE


def test_the_shared_defaults_are_the_well_known_ports() -> None:
    assert (defaults.OUTBOUND_PORT, defaults.INBOUND_PORT, defaults.DNS_PORT) == \
        (15001, 15006, 15053)
    assert defaults.SIDECAR_USER == "gossamer"


@pytest.mark.parametrize(("parse", "text", "message"), [
    (parse_port, "0", "0 is not a port number (1-65535)"),
    (parse_port, "65536", "65536 is not a port number"),
    (parse_port, "http", "'http' is not a port number"),
    (parse_cidr, "10.0.0.1/8", "has host bits set"),
    (parse_cidr, "10.0.0.0/33", "is not an IPv4 address or CIDR"),
    (parse_cidr, "fd00::/8", "is IPv6: only IPv4 is redirected"),
    (parse_uid, "-1", "is not a uid"),
    (parse_uid, "4294967295", "is not a uid"),
])
def test_bad_values_are_refused_with_their_reason(parse: object, text: str,
                                                  message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse(text)  # type: ignore[operator]
    assert message in str(caught.value)


def test_settings_refuse_shared_capture_ports_and_no_excluded_uid() -> None:
    with pytest.raises(ValueError, match="capture ports must differ"):
        RedirectSettings(exclude_uids=(1,), dns_port=15001)
    with pytest.raises(ValueError, match="at least one uid"):
        RedirectSettings(exclude_uids=())


@pytest.mark.parametrize("args", [
    ["--outbound-port", "70000"],
    ["--exclude-outbound-cidrs", "10.0.0.0/8,not-a-net"],
    ["--exclude-inbound-ports", "22,x"],
    ["--dns-port", "15006"],
    ["--exclude-uid", "99999999999"],
])
def test_a_bad_flag_is_one_error_line_and_exit_2(args: list[str]) -> None:
    done = CliRunner().invoke(main, ["proxy", "redirect", "install", "--dry-run",
                                     "--exclude-uid", "0", *args])
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.output
    assert "Traceback" not in done.output


def test_dry_run_prints_the_table_as_rendered() -> None:
    done = CliRunner().invoke(main, ["proxy", "redirect", "install", "--dry-run",
                                     "--exclude-uid", "999"])
    assert done.exit_code == 0, done.output
    assert done.output == DEFAULT_TABLE


def test_a_missing_program_names_the_package_to_install() -> None:
    with pytest.raises(ProgramMissing, match=r"install Debian's `nftables` package"):
        find_program("nft-not-installed-here", "nftables")


# -- every combination parses with the real nft ----------------------------------------------

def nft_or_skip() -> str:
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if os.geteuid() != 0 or nft is None:
        pytest.skip("SKIPPING the nft -c check of rendered rulesets: it needs root and the "
                    "`nft` program (Debian nftables, installed by `make`)")
    return nft


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SETTINGS)
def test_every_combination_of_options_parses_with_nft(asked: RedirectSettings) -> None:
    nft = nft_or_skip()
    done = subprocess.run([nft, "-c", "-f", "-"], input=install_script(asked),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{done.stderr}\n{render(asked)}"
