"""Fuzz (hypothesis): whatever text a config file holds, loading it gives a Config or a ConfigError naming the
file, never another exception; and the fast YAML reader (exporter.config.yamlevents) builds exactly what
PyYAML's loader builds, or hands the text back to it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import ConfigError, load_config, yamlevents
from exporter.config.yamlfile import MAX_DEPTH, _StrictLoader

# Pieces of configs and of YAML's odder corners, so that the examples reach the validators and the
# constructors, not only the scanner's first error.
PIECES = st.sampled_from([
    "sites:", "\n", "\n  ", "\n    ", "\n      ", "- ", "id: shop-1", "checks:", "- name: pc", "ping: ",
    "host: 127.0.0.1", "tcp: {host: 127.0.0.1, port: 80}", "http: {url: 'http://127.0.0.1/'}", "kodeks: ",
    "kkt: ", "getad: ", "iiko_log: ", "interval: ", "timeout: ", "count: ", "jitter: ", "labels: ",
    "{client: a}", "hours: ", "maintenance: ", "timezone: Europe/Moscow", "defaults: ", "push: ",
    "targets_file: t.yml", "hours_file: h.yml", "key_file: k", "relay: ", "open: {mon-fri: '10:00-19:00'}",
    "body_size_limit: ", "valid_status_codes: ", "{", "}", "[", "]", ", ", ": ", "&a ", "*a", "<<: ",
    "!!str ", "!!int ", "!!float ", "!!binary ", "!!set ", "!!omap ", "!foo ", "? ", "'", '"', "# x", "---\n",
    "...\n", "%YAML 1.1\n", "1e400", ".nan", ".inf", "0x1f", "0b101", "0o17", "017", "1:2:3", "1_000",
    "2027-02-30", "2027-02-03 10:00:00", "~", "null", "yes", "No", "=", "500ms", "1m30s", "10MB", "5" * 40,
    "\t", "\x85", "\u2028", "\ufeff", "\\", "|\n  text", ">-\n  text",
])
CHARACTERS = st.characters(blacklist_categories=("Cs",))  # a file decoded from UTF-8 holds no surrogates
CONFIG_LIKE = st.lists(st.one_of(PIECES, st.text(CHARACTERS, max_size=6)), max_size=40).map("".join)
ANY_TEXT = st.one_of(st.text(CHARACTERS, max_size=300), CONFIG_LIKE)
# Valid YAML of every shape and quoting style, as PyYAML writes it: the fast reader's own ground.
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(CHARACTERS, max_size=10))
DATA = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(CHARACTERS, max_size=6), inner,
                                                                     max_size=4)), max_leaves=25)
DUMPED = st.builds(lambda data, flow, style: yaml.safe_dump(data, default_flow_style=flow, default_style=style,
                                                             allow_unicode=True),
                   DATA, st.sampled_from([None, True, False]), st.sampled_from([None, "'", '"']))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_TEXT)
def test_any_text_as_a_config_loads_or_is_a_config_error_naming_the_file(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "site.yml"
        path.write_text(text, encoding="utf-8")
        try:
            config = load_config(path, read_secrets=False)
        except ConfigError as err:
            assert str(err).startswith(f"{path}: ") and err.detail and "Traceback" not in err.detail
            return
        assert config.sites or config.targets_file is not None


def _reference(text: str) -> tuple[str, object]:
    try:
        return "value", repr(yaml.load(text, Loader=_StrictLoader))  # repr: .nan equals itself there
    except Exception as err:  # noqa: BLE001 - any refusal: the fast reader must refuse too
        return "refused", type(err).__name__


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(ANY_TEXT, DUMPED))
def test_the_fast_reader_builds_what_pyyaml_builds_or_hands_the_text_back(text):
    try:
        fast = "value", repr(yamlevents.build(text, _StrictLoader, MAX_DEPTH))
    except yamlevents.Unsupported:
        return  # the reference loader reads it: nothing to compare
    assert fast == _reference(text)


def test_the_fast_reader_handles_a_fleet_config_itself():
    # The point of the fast reader: a config like the big ones must not fall back to the slow one.
    sites = "".join(f"  - id: shop-{i}\n    labels: &l{i} {{client: c{i % 7}, tier: {i % 3}}}\n    checks:\n"
                    f"      - {{name: pc, interval: 30s, ping: {{host: 127.0.0.{i % 250 + 1}, count: 2}}}}\n"
                    f"      - name: 'web'\n        tcp: {{host: \"127.0.0.1\", port: 80}}\n" for i in range(50))
    text = f"defaults: {{interval: 1m, jitter: 0.1}}\nsites:\n{sites}"
    assert yamlevents.build(text, _StrictLoader, MAX_DEPTH) == yaml.load(text, Loader=_StrictLoader)
