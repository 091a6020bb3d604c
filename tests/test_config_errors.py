"""Config mistakes, one test per kind: the `ConfigError` message names the file, the exact path inside the
document (``sites[1].checks[0].ping.count``), what was expected and what was found.

Every test writes a real YAML file into `tmp_path` and loads it with `exporter.config.load_config`; the
last tests run ``sitewatch-exporter validate`` as a subprocess. A fully valid config is checked too,
including how schedule defaults merge (built-in < top level < site < check).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from exporter.checks import http, ping, tcp
from exporter.config import ConfigError, Schedule, load_config

# A valid first site, so that the broken one is sites[1] and a wrong index in the path would show.
GOOD_SITE = """\
  - id: shop-1
    checks:
      - name: web-port
        tcp: {host: 127.0.0.1, port: 8080}
"""


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SITEWATCH_KEY", raising=False)
    monkeypatch.delenv("SITEWATCH_KEY_FILE", raising=False)


def write_config(tmp_path: Path, text: str, name: str = "site.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    """Loads `path`, which must fail; returns the message after checking that it starts with the file."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert caught.value.file == str(path)
    return message


def error_for(tmp_path: Path, text: str) -> str:
    return config_error(write_config(tmp_path, text))


def site_with_checks(checks: str, site_extra: str = "") -> str:
    """A config of GOOD_SITE and a second site `shop-2` holding `checks` (YAML list items, unindented)."""
    body = textwrap.indent(textwrap.dedent(checks), " " * 6)
    extra = textwrap.indent(textwrap.dedent(site_extra), " " * 4)
    return f"sites:\n{GOOD_SITE}  - id: shop-2\n{extra}    checks:\n{body}"


def assert_names(message: str, file: Path, doc_path: str, expected: str, found: str | None = None) -> None:
    # The line the path is written on stands between the file and the path (an empty file has no lines).
    assert re.search(rf"{re.escape(str(file))}: (line \d+: )?{re.escape(f'{doc_path}: expected {expected}')}",
                     message), message
    if found is not None:
        assert f", got {found}" in message, message


# --- wrong type and out of range -------------------------------------------------------------------------


def test_ping_count_as_text_names_the_path_and_the_expected_range(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: pc
          ping: {host: 127.0.0.1, count: five}
    """))
    message = config_error(path)
    assert_names(message, path, "sites[1].checks[0].ping.count", "an integer from 1 to 100", "the string 'five'")


def test_ping_count_of_zero_is_out_of_the_expected_range(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: pc
          ping: {host: 127.0.0.1, count: 0}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].ping.count", "an integer from 1 to 100",
                 "the number 0")


def test_ping_max_loss_above_one_is_out_of_the_expected_range(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: pc
          ping: {host: 127.0.0.1, max_loss: 1.5}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].ping.max_loss", "a number from 0 to 1",
                 "the number 1.5")


def test_boolean_where_an_integer_belongs_is_named_as_a_boolean(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          tcp: {host: 127.0.0.1, port: true}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].tcp.port", "an integer from 1 to 65535",
                 "the boolean true")


# --- unknown keys --------------------------------------------------------------------------------------


def test_unknown_top_level_key_lists_the_known_keys_and_suggests_the_near_one(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"default:\n  interval: 30s\nsites:\n{GOOD_SITE}")
    message = config_error(path)
    assert_names(message, path, "default", "one of the keys defaults, hours, hours_file, key_file, push, sites",
                 "unknown key 'default'")
    assert "did you mean 'defaults'?" in message


def test_unknown_key_in_a_site_names_the_site_and_suggests_the_near_one(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          tcp: {host: 127.0.0.1, port: 80}
    """, site_extra="label: {client: acme}\n"))
    message = config_error(path)
    assert_names(message, path, "sites[1].label",
                 "one of the keys id, labels, timezone, defaults, relay, hours, maintenance, checks",
                 "unknown key 'label'")
    assert "did you mean 'labels'?" in message


def test_unknown_key_in_a_check_names_the_check_without_a_far_fetched_hint(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          retries: 3
          tcp: {host: 127.0.0.1, port: 80}
    """))
    message = config_error(path)
    assert_names(message, path, "sites[1].checks[0].retries",
                 "one of the keys name, tcp, interval, timeout, failure_threshold, success_threshold, jitter",
                 "unknown key 'retries'")
    assert "did you mean" not in message


def test_misspelt_ping_option_suggests_the_key_it_resembles(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: pc
          ping: {host: 127.0.0.1, cout: 3}
    """))
    message = config_error(path)
    assert_names(message, path, "sites[1].checks[0].ping.cout",
                 "one of the keys host, count, interval, timeout, max_loss, ip_version", "unknown key 'cout'")
    assert message.endswith("(did you mean 'count'?)")


# --- missing required keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second_site", "doc_path"),
    [
        pytest.param("- labels: {client: acme}\n  checks: []\n", "sites[1].id", id="site-id"),
        pytest.param("- id: shop-2\n  checks:\n    - tcp: {host: 127.0.0.1, port: 80}\n",
                     "sites[1].checks[0].name", id="check-name"),
        pytest.param("- id: shop-2\n  checks:\n    - {name: pc, ping: {count: 3}}\n",
                     "sites[1].checks[0].ping.host", id="ping-host"),
        pytest.param("- id: shop-2\n  checks:\n    - {name: web, tcp: {host: 127.0.0.1}}\n",
                     "sites[1].checks[0].tcp.port", id="tcp-port"),
        pytest.param("- id: shop-2\n  checks:\n    - {name: main, http: {method: GET}}\n",
                     "sites[1].checks[0].http.url", id="http-url"),
        pytest.param("- id: shop-2\n", "sites[1].checks", id="site-checks"),
    ],
)
def test_missing_required_key_names_its_path_and_says_it_is_required(
    tmp_path: Path, second_site: str, doc_path: str
) -> None:
    path = write_config(tmp_path, f"sites:\n{GOOD_SITE}{textwrap.indent(second_site, '  ')}")
    assert_names(config_error(path), path, doc_path, "a value (this key is required)")


def test_missing_sites_key_is_reported_as_required(tmp_path: Path) -> None:
    path = write_config(tmp_path, "defaults: {interval: 30s}\n")
    assert_names(config_error(path), path, "sites", "a value (this key is required)")


# --- check type keys -------------------------------------------------------------------------------------


def test_check_without_a_type_key_lists_the_check_types(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          interval: 30s
    """))
    message = config_error(path)
    assert_names(message, path, "sites[1].checks[0]",
                 "exactly one check type key (ping, tcp, http, kodeks, kkt, getad, iiko_log)",
                 "a mapping with keys name, interval")


def test_check_with_two_type_keys_names_both_of_them(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          ping: {host: 127.0.0.1}
          tcp: {host: 127.0.0.1, port: 80}
    """))
    message = config_error(path)
    assert_names(message, path, "sites[1].checks[0]",
                 "exactly one check type key (ping, tcp, http, kodeks, kkt, getad, iiko_log)")
    assert "found ping, tcp" in message


def test_check_with_two_type_keys_does_not_claim_that_nothing_was_found(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          ping: {host: 127.0.0.1}
          tcp: {host: 127.0.0.1, port: 80}
    """))
    message = config_error(path)
    assert "null" not in message
    assert "nothing" not in message


def test_check_that_is_not_a_mapping_says_what_a_check_looks_like(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("- ping 127.0.0.1\n"))
    assert_names(config_error(path), path, "sites[1].checks[0]",
                 "a check: a mapping with a name and one of ping, tcp, http", "the string 'ping 127.0.0.1'")


# --- durations, sizes, regular expressions, URLs, status codes --------------------------------------------


def test_duration_in_unknown_units_names_the_accepted_forms(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          interval: 5 parsecs
          tcp: {host: 127.0.0.1, port: 80}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].interval",
                 "a duration such as 500ms, 10s, 2m or a number of seconds", "the string '5 parsecs'")


def test_duration_below_the_minimum_names_the_bound(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"defaults:\n  interval: 50ms\nsites:\n{GOOD_SITE}")
    assert_names(config_error(path), path, "defaults.interval", "a duration of at least 100ms and at most 86400s",
                 "the string '50ms'")


def test_size_in_unknown_units_names_the_accepted_forms(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: main
          http: {url: "http://127.0.0.1/", body_size_limit: 10 XB}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].http.body_size_limit",
                 "a size such as 65536, 512KiB or 10MB", "the string '10 XB'")


def test_size_of_zero_is_below_the_minimum(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: main
          http: {url: "http://127.0.0.1/", body_size_limit: 0}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].http.body_size_limit",
                 "a size of at least 1 bytes", "the number 0")


def test_bad_regex_in_must_contain_list_includes_the_regex_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: main
          http:
            url: http://127.0.0.1/
            must_contain: ["Main page", "Cart (0"]
    """))
    message = config_error(path)
    assert_names(message, path, "sites[1].checks[0].http.must_contain[1]", "a valid regular expression",
                 "the string 'Cart (0'")
    assert "missing ), unterminated subpattern at position 5" in message


def test_bad_regex_written_as_a_single_string_is_reported_at_its_own_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: main
          http: {url: "http://127.0.0.1/", must_not_contain: "Error ["}
    """))
    message = config_error(path)
    assert "sites[1].checks[0].http.must_not_contain" in message
    assert "a valid regular expression" in message
    assert "unterminated character set" in message


def test_bad_regex_written_as_a_single_string_has_no_list_index_in_its_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: main
          http: {url: "http://127.0.0.1/", must_not_contain: "Error ["}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].http.must_not_contain", "a valid regular expression",
                 "the string 'Error ['")


def test_url_with_ftp_scheme_asks_for_http_or_https(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: main
          http: {url: "ftp://files.example/"}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].http.url", "an http:// or https:// URL with a host",
                 "the string 'ftp://files.example/'")


def test_url_with_a_password_is_refused_without_repeating_the_password(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: main
          http: {url: "https://admin:Tr0ub4dor-3@shop.example/"}
    """))
    message = config_error(path)
    assert_names(message, path, "sites[1].checks[0].http.url", "a URL without a password in it")
    assert "basic_auth" in message
    assert "Tr0ub4dor-3" not in message


def test_status_code_class_6xx_is_refused_at_its_list_index(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: main
          http: {url: "http://127.0.0.1/", valid_status_codes: [200, 6xx]}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].http.valid_status_codes[1]",
                 'HTTP status codes such as 200, "2xx" or "200-399"', "the string '6xx'")


def test_single_bad_status_code_is_refused_at_the_key_itself(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: main
          http: {url: "http://127.0.0.1/", valid_status_codes: 6xx}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].http.valid_status_codes",
                 'HTTP status codes such as 200, "2xx" or "200-399"', "the string '6xx'")


def test_unknown_http_method_lists_the_methods(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: main
          http: {url: "http://127.0.0.1/", method: FETCH}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].http.method", "one of GET, HEAD, POST, PUT, OPTIONS",
                 "the string 'FETCH'")


def test_ping_ip_version_written_as_a_bare_number_is_accepted(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: pc
          ping: {host: 127.0.0.1, ip_version: 4}
    """))
    config = load_config(path)
    assert config.site("shop-2").checks[0].options["ip_version"] == "4"


# --- site fields -----------------------------------------------------------------------------------------


def test_unknown_timezone_asks_for_an_iana_name(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          tcp: {host: 127.0.0.1, port: 80}
    """, site_extra="timezone: Mars/Olympus_Mons\n"))
    assert_names(config_error(path), path, "sites[1].timezone", "an IANA time zone name such as Europe/Moscow",
                 "the string 'Mars/Olympus_Mons'")


def test_label_name_starting_with_a_digit_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          tcp: {host: 127.0.0.1, port: 80}
    """, site_extra="labels: {client: acme, 1st_floor: 'yes'}\n"))
    assert_names(config_error(path), path, "sites[1].labels.1st_floor",
                 "a label name of letters, digits and '_' not starting with a digit", "the string '1st_floor'")


@pytest.mark.parametrize("label", ["site", "check", "__meta"])
def test_label_name_that_sitewatch_sets_itself_is_refused(tmp_path: Path, label: str) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          tcp: {host: 127.0.0.1, port: 80}
    """, site_extra=f"labels: {{{label}: x}}\n"))
    message = config_error(path)
    assert_names(message, path, f"sites[1].labels.{label}", "a label name that sitewatch does not set itself",
                 f"the string '{label}'")
    assert "nor starting with '__'" in message


def test_label_value_that_is_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          tcp: {host: 127.0.0.1, port: 80}
    """, site_extra="labels: {client: {name: acme}}\n"))
    assert_names(config_error(path), path, "sites[1].labels.client", "a label value (a string)",
                 "a mapping with keys name")


def test_bad_site_id_says_what_a_name_may_contain(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          tcp: {host: 127.0.0.1, port: 80}
    """).replace("id: shop-2", "id: shop 2"))
    assert_names(config_error(path), path, "sites[1].id", "a name of letters, digits, '.', '_' or '-'",
                 "the string 'shop 2'")


# --- duplicates and consistency --------------------------------------------------------------------------


def test_duplicate_site_id_names_both_places(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"sites:\n{GOOD_SITE}{GOOD_SITE.replace('shop-1', 'shop-2')}{GOOD_SITE}")
    message = config_error(path)
    assert_names(message, path, "sites[2].id", "a site id not used before (sites[0].id already is 'shop-1')",
                 "the string 'shop-1'")


def test_duplicate_check_name_within_a_site_names_both_places(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          tcp: {host: 127.0.0.1, port: 80}
        - name: main
          http: {url: "http://127.0.0.1/"}
        - name: web
          tcp: {host: 127.0.0.1, port: 443}
    """))
    assert_names(config_error(path), path, "sites[1].checks[2].name",
                 "a check name in this site not used before (sites[1].checks[0].name already is 'web')",
                 "the string 'web'")


def test_same_check_name_in_two_sites_is_allowed(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web-port
          tcp: {host: 127.0.0.1, port: 80}
    """))
    config = load_config(path)
    assert [check.key for check in config.checks()] == [("shop-1", "web-port"), ("shop-2", "web-port")]


def test_check_timeout_longer_than_the_interval_names_the_interval(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: web
          timeout: 30s
          tcp: {host: 127.0.0.1, port: 80}
    """, site_extra="defaults: {interval: 10s}\n"))
    assert_names(config_error(path), path, "sites[1].checks[0].timeout",
                 "a timeout no longer than the interval (10s)", "the number 30.0")


def test_ping_packets_that_do_not_fit_the_check_timeout_say_how_long_they_need(tmp_path: Path) -> None:
    # Five packets 1s apart: the last leaves at 4s and may wait 2s for its reply, so 6s are needed.
    path = write_config(tmp_path, site_with_checks("""\
        - name: pc
          timeout: 3s
          ping: {host: 127.0.0.1, count: 5, interval: 1s, timeout: 2s}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].timeout",
                 "a check timeout of at least 6s, as 5 packets 1s apart with a 2s packet timeout need that long",
                 "the number 3.0")


def test_ping_packets_that_just_fit_the_check_timeout_are_accepted(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: pc
          timeout: 6s
          ping: {host: 127.0.0.1, count: 5, interval: 1s, timeout: 2s}
    """))
    assert load_config(path).site("shop-2").checks[0].schedule.timeout == 6.0


# --- the file itself -------------------------------------------------------------------------------------


def test_key_written_twice_names_both_lines(tmp_path: Path) -> None:
    path = write_config(tmp_path, """\
        sites:
          - id: shop-1
            checks:
              - name: web
                tcp: {host: 127.0.0.1, port: 80}
            id: shop-2
    """)
    message = config_error(path)
    assert message == f"{path}: line 6: the key 'id' is written twice (first at line 2)"


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write_config(tmp_path, """\
        sites:
          - id: shop-1
            checks: []
          timezone: UTC
    """)
    message = config_error(path)
    assert message.startswith(f"{path}: line 4, column 3: not valid YAML: "), message


def test_list_used_as_a_mapping_key_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "? [shop-1, shop-2]\n: 1\nsites: []\n")
    assert "line" in config_error(path)


def test_yaml_merge_keys_share_options_between_checks(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: pc
          ping: &pc {host: 127.0.0.1, count: 2, interval: 100ms, timeout: 1s}
        - name: pc-long
          ping:
            <<: *pc
            count: 4
    """))
    options = [check.options for check in load_config(path).site("shop-2").checks]
    assert [o["count"] for o in options] == [2, 4]
    assert options[1]["host"] == "127.0.0.1"


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "site.yml"
    assert config_error(path) == f"{path}: the file does not exist"


def test_empty_file_says_that_sites_are_required(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    assert_names(config_error(path), path, "sites", "a value (this key is required)")


def test_top_level_list_asks_for_a_mapping(tmp_path: Path) -> None:
    path = write_config(tmp_path, "- id: shop-1\n- id: shop-2\n")
    assert_names(config_error(path), path, "(top level)", "a mapping", "a list of 2 item(s)")


def test_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "site.yml"
    path.write_bytes("sites:\n  - id: магазин\n".encode("cp1251"))
    assert "is not UTF-8 text" in config_error(path)


def test_empty_site_list_asks_for_at_least_one_site(tmp_path: Path) -> None:
    path = write_config(tmp_path, "sites: []\n")
    assert_names(config_error(path), path, "sites", "a list of sites with at least 1 item(s)", "a list of 0 item(s)")


def test_sites_as_a_mapping_asks_for_a_list(tmp_path: Path) -> None:
    path = write_config(tmp_path, "sites:\n  shop-1: {checks: []}\n")
    assert_names(config_error(path), path, "sites", "a list of sites", "a mapping with keys shop-1")


# --- documents no config is made of ----------------------------------------------------------------------
# Each once ended in a RecursionError or ValueError traceback from PyYAML or int(), in `validate` and in a
# running exporter's reload, instead of a message naming the file and the line.

NESTED_BRACKETS = "sites: " + "[" * 5000 + "\n"
LONG_NUMBER = "1" * 5000


def check_with(field: str) -> str:
    return (f"sites:\n  - id: shop-1\n    checks:\n      - name: pc\n        {field}\n"
            "        ping: {host: 127.0.0.1}\n")


def test_five_thousand_nested_brackets_name_the_line_and_the_depth_allowed(tmp_path: Path) -> None:
    message = error_for(tmp_path, NESTED_BRACKETS)
    assert "line 1, column 107: expected lists and mappings nested at most 100 levels deep" in message, message


def test_nesting_just_under_the_limit_is_read_and_then_refused_by_the_schema(tmp_path: Path) -> None:
    message = error_for(tmp_path, "sites: " + "[" * 98 + "]" * 98 + "\n")
    assert "sites[0]: expected a mapping, got a list of 1 item(s)" in message, message


def test_a_five_thousand_digit_number_names_its_line_and_the_longest_allowed(tmp_path: Path) -> None:
    message = error_for(tmp_path, check_with(f"interval: {LONG_NUMBER}"))
    assert "line 5, column 19: expected a number of at most 1000 characters, got one of 5000" in message, message


def test_a_five_thousand_digit_duration_is_out_of_range_at_its_path(tmp_path: Path) -> None:
    message = error_for(tmp_path, check_with(f"interval: {LONG_NUMBER}s"))
    assert "sites[0].checks[0].interval: expected a duration" in message and "at most 86400s" in message, message


def test_a_huge_hexadecimal_number_is_refused_at_its_line(tmp_path: Path) -> None:
    # int() reads hexadecimal of any length, but the message quoting it could not print it
    message = error_for(tmp_path, check_with("interval: 0x" + "f" * 4000))
    assert "line 5, column 19: expected a number of at most 1000 characters" in message, message


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400"])
def test_not_a_number_and_infinity_are_not_durations(tmp_path: Path, value: str) -> None:
    message = error_for(tmp_path, check_with(f"interval: {value}"))
    assert "sites[0].checks[0].interval: expected a duration" in message, message


def test_a_five_thousand_digit_size_names_its_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks(f"""\
        - name: page
          http: {{url: "http://127.0.0.1/", body_size_limit: "{LONG_NUMBER}KB"}}
    """))
    assert_names(config_error(path), path, "sites[1].checks[0].http.body_size_limit", "a size such as 65536, "
                 "512KiB or 10MB")


def test_an_alias_inside_the_node_it_names_is_refused_at_its_line(tmp_path: Path) -> None:
    message = error_for(tmp_path, "sites: &all [*all]\n")
    assert "line 1, column 14: not valid YAML: found the alias *all inside the node it names" in message, message


# --- a valid config --------------------------------------------------------------------------------------

VALID = """\
    defaults:
      interval: 30s
      timeout: 5s
      failure_threshold: 4
      jitter: 0.2
    sites:
      - id: shop-1
        labels: {client: acme, city: Kazan}
        timezone: Europe/Moscow
        defaults:
          interval: 20s
          failure_threshold: 2
        checks:
          - name: pc
            ping: {host: 127.0.0.1, count: 3, interval: 200ms, timeout: 1s}
          - name: web-port
            timeout: 2s
            tcp: {host: 127.0.0.1, port: 8080}
          - name: main-page
            interval: 1m
            success_threshold: 1
            http:
              url: https://shop.example/
              must_contain: "Main page"
              must_not_contain: ["Error", "maintenance"]
              valid_status_codes: [200, "3xx", "401-403"]
              body_size_limit: 512KiB
              max_duration: 1500ms
      - id: shop-2
        labels: {client: other, region: north, tier: 1}
        checks:
          - name: pc
            timeout: 8s
            jitter: 0
            ping: {host: 10.0.0.5}
      - id: warehouse
        checks: []
"""


def test_valid_config_loads_with_defaults_merged_top_then_site_then_check(tmp_path: Path) -> None:
    path = write_config(tmp_path, VALID)
    config = load_config(path)

    assert config.source == path
    assert [site.id for site in config.sites] == ["shop-1", "shop-2", "warehouse"]
    shop1, shop2, warehouse = config.sites
    assert shop1.labels == (("city", "Kazan"), ("client", "acme"))
    assert shop2.labels == (("client", "other"), ("region", "north"), ("tier", "1"))
    assert warehouse.labels == () and warehouse.checks == ()
    assert str(shop1.timezone) == "Europe/Moscow" and shop2.timezone is None

    schedules = {check.key: check.schedule for check in config.checks()}
    # interval: site 20s beats top 30s; timeout: top 5s; failure: site 2 beats top 4; success: built-in 2.
    assert schedules[("shop-1", "pc")] == Schedule(interval=20.0, timeout=5.0, failure_threshold=2,
                                                   success_threshold=2, jitter=0.2)
    assert schedules[("shop-1", "web-port")] == Schedule(interval=20.0, timeout=2.0, failure_threshold=2,
                                                         success_threshold=2, jitter=0.2)
    assert schedules[("shop-1", "main-page")] == Schedule(interval=60.0, timeout=5.0, failure_threshold=2,
                                                          success_threshold=1, jitter=0.2)
    # No site defaults: top level, then the check's own timeout and a jitter of 0 (not taken as "unset").
    assert schedules[("shop-2", "pc")] == Schedule(interval=30.0, timeout=8.0, failure_threshold=4,
                                                   success_threshold=2, jitter=0.0)

    pc, port, page = shop1.checks
    assert (pc.kind, port.kind, page.kind) == (ping, tcp, http)
    assert (pc.type, port.type, page.type) == ("ping", "tcp", "http")
    assert page.path == "sites[0].checks[2]"
    assert pc.options == {"host": "127.0.0.1", "count": 3, "interval": 0.2, "timeout": 1.0, "max_loss": 0.5,
                          "ip_version": "auto"}
    assert port.options == {"host": "127.0.0.1", "port": 8080}
    assert shop2.checks[0].options["count"] == 5 and shop2.checks[0].options["timeout"] == 2.0
    assert page.options["url"] == "https://shop.example/"
    assert page.options["method"] == "GET"
    assert page.options["valid_status_codes"] == [(200, 200), (300, 399), (401, 403)]
    assert [p.pattern for p in page.options["must_contain"]] == ["Main page"]
    assert [p.pattern for p in page.options["must_not_contain"]] == ["Error", "maintenance"]
    assert page.options["body_size_limit"] == 512 * 1024
    assert page.options["max_duration"] == 1.5
    assert page.options["basic_auth"] is None


# --- the validate command --------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SITEWATCH_KEY", "SITEWATCH_KEY_FILE")}
    return subprocess.run([sys.executable, "-m", "exporter.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=30)


def test_validate_command_exits_2_and_names_the_file_and_path_of_a_bad_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, site_with_checks("""\
        - name: pc
          ping: {host: 127.0.0.1, count: five}
    """))
    result = run_cli("validate", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("config error: ")
    assert str(path) in result.stderr
    assert "sites[1].checks[0].ping.count: expected an integer from 1 to 100" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_command_exits_0_and_says_valid_for_a_good_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, VALID)
    result = run_cli("validate", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: valid, 3 site(s), 4 check(s)"


@pytest.mark.parametrize("text, expected", [
    (NESTED_BRACKETS, "line 1, column 107: expected lists and mappings nested at most 100 levels deep"),
    (check_with(f"interval: {LONG_NUMBER}"), "line 5, column 19: expected a number of at most 1000 characters"),
    (check_with(f"interval: {LONG_NUMBER}s"), "sites[0].checks[0].interval: expected a duration"),
], ids=["nested-brackets", "long-number", "long-duration"])
def test_validate_command_refuses_what_once_crashed_it_with_exit_2_and_a_message(tmp_path: Path, text: str,
                                                                                expected: str) -> None:
    path = tmp_path / "site.yml"
    path.write_text(text, encoding="utf-8")
    result = run_cli("validate", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == ""
    assert result.stderr.startswith(f"config error: {path}: ") and expected in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_an_inherited_timeout_shrinks_to_a_shorter_interval_but_an_explicit_one_does_not(tmp_path: Path) -> None:
    path = write_config(tmp_path, """\
        defaults: {timeout: 10s}
        sites:
          - id: shop
            checks:
              - {name: fast, interval: 2s, tcp: {host: 127.0.0.1, port: 80}}
    """)
    assert load_config(path).checks()[0].schedule.timeout == 2.0
    path = write_config(tmp_path, """\
        sites:
          - id: shop
            checks:
              - {name: fast, interval: 2s, timeout: 3s, tcp: {host: 127.0.0.1, port: 80}}
    """)
    assert "sites[0].checks[0].timeout: expected a timeout no longer than the interval (2s)" in config_error(path)
