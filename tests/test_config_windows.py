"""Configs written on Windows, and what a technician sees when one is wrong.

Each config is written byte for byte as Notepad saves it (CRLF line ends; UTF-8 with or without a byte order
mark, "Unicode" = UTF-16 LE with one, "Unicode big endian", or ANSI = cp1251 on Russian Windows) and read by
the real loaders. Then: Windows paths in double quotes, where a backslash starts an escape; the line of every
error; and `sitewatch-exporter validate`, run as a subprocess, listing every mistake of a file at once.
"""

from __future__ import annotations

import codecs
import os
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertmanager.config import load_receiver_config
from exporter.config import ConfigError, load_config
from exporter.config.yamlfile import YamlError, decode, parse_yaml, read_yaml
from ingest.config import load_ingest_config
from ingress.config import load_ingress_config
from receiver_kit import write_receiver_config

ROOT = Path(__file__).resolve().parent.parent
EXPORTER = ROOT / ".venv" / "bin" / "sitewatch-exporter"
SAVE_AS_UTF8 = ("save it as UTF-8 (in Notepad: File > Save As, Encoding: UTF-8; on Russian Windows: "
                "Файл > Сохранить как, Кодировка: UTF-8)")
QUOTING_HINT = ("write a Windows path in single quotes ('C:\\ProgramData\\sitewatch\\key') or with forward slashes "
                "(C:/ProgramData/sitewatch/key)")

ROMASHKA = """\
# Кафе «Ромашка», касса 1
sites:
  - id: romashka-1
    labels: {client: Ромашка, city: Москва}
    timezone: Europe/Moscow
    checks:
      - name: pc
        ping: {host: 127.0.0.1, count: 2}
"""


def as_notepad_saves(text: str, encoding: str) -> bytes:
    """`text` as Notepad writes it with the Encoding box set to `encoding`: CRLF line ends, and its marks."""
    windows = text.replace("\n", "\r\n")
    return {
        "UTF-8": windows.encode("utf-8"),
        "UTF-8 with BOM": codecs.BOM_UTF8 + windows.encode("utf-8"),
        "UTF-16 LE": codecs.BOM_UTF16_LE + windows.encode("utf-16-le"),
        "UTF-16 BE": codecs.BOM_UTF16_BE + windows.encode("utf-16-be"),
        "ANSI": windows.encode("cp1251"),
    }[encoding]


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, read_secrets=False)
    assert str(caught.value).startswith(f"{path}: "), str(caught.value)
    return caught.value


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SITEWATCH_KEY", raising=False)
    monkeypatch.delenv("SITEWATCH_KEY_FILE", raising=False)


# --- encodings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-8 with BOM", "UTF-16 LE", "UTF-16 BE"])
def test_a_config_saved_by_notepad_in_a_unicode_encoding_loads_with_its_russian_labels(tmp_path, encoding):
    config = load_config(write_bytes(tmp_path / "site.yml", as_notepad_saves(ROMASHKA, encoding)))
    site = config.site("romashka-1")
    assert site.labels == (("city", "Москва"), ("client", "Ромашка"))
    assert [check.name for check in site.checks] == ["pc"]


def test_a_config_in_utf32_with_a_byte_order_mark_loads_too(tmp_path):
    data = codecs.BOM_UTF32_LE + ROMASHKA.replace("\n", "\r\n").encode("utf-32-le")
    assert load_config(write_bytes(tmp_path / "site.yml", data)).site("romashka-1").labels[0] == ("city", "Москва")


@pytest.mark.parametrize("encoding", ["UTF-8 with BOM", "UTF-16 LE", "UTF-16 BE"])
def test_a_mistake_in_a_unicode_notepad_file_names_its_line_counting_crlf_once(tmp_path, encoding):
    text = ROMASHKA.replace("count: 2", "count: five")
    path = write_bytes(tmp_path / "site.yml", as_notepad_saves(text, encoding))
    assert str(load_error(path)) == (f"{path}: line 8: sites[0].checks[0].ping.count: expected an integer from 1 "
                                     "to 100, got the string 'five'")


def test_an_ansi_config_names_the_line_and_column_of_its_first_russian_letter_and_how_to_save_it(tmp_path):
    path = write_bytes(tmp_path / "site.yml", as_notepad_saves(ROMASHKA.replace("# Кафе «Ромашка», касса 1\n", ""),
                                                               "ANSI"))
    # line 3 is `    labels: {client: Ромашка, ...}`; the Р is its 22nd character
    assert str(load_error(path)) == (f"{path}: line 3, column 22: the file is not UTF-8 text; it is probably in the "
                                     f"Windows ANSI encoding (cp1251): {SAVE_AS_UTF8}")


def test_an_ansi_comment_on_the_first_line_is_found_there(tmp_path):
    error = load_error(write_bytes(tmp_path / "site.yml", as_notepad_saves(ROMASHKA, "ANSI")))
    assert error.line == 1 and error.problems[0].column == 3, str(error)
    assert "Windows ANSI encoding (cp1251)" in str(error)


def test_utf16_without_a_byte_order_mark_is_named_as_such(tmp_path):
    path = write_bytes(tmp_path / "site.yml", ROMASHKA.replace("\n", "\r\n").encode("utf-16-le"))
    error = load_error(path)
    assert "probably UTF-16 text without a byte order mark" in str(error) and SAVE_AS_UTF8 in str(error)


def test_a_cut_utf16_file_is_refused_with_a_message_not_a_traceback(tmp_path):
    data = as_notepad_saves(ROMASHKA, "UTF-16 LE")[:-1]  # an odd number of bytes
    message = str(load_error(write_bytes(tmp_path / "site.yml", data)))
    assert "the byte order mark of UTF-16 but is not UTF-16 text from here on" in message, message
    assert "line 9, column 1" in message, message  # after the last line's CR, a line end as YAML counts them


def test_a_shared_hours_file_saved_as_ansi_is_named_with_its_own_line(tmp_path):
    hours = write_bytes(tmp_path / "chain-hours.yml", as_notepad_saves(
        'restaurant:\n  open: {daily: "10:00-23:00"}\n  maintenance:\n    - {name: Перезапуск, time: "03:00-03:30"}\n',
        "ANSI"))
    config = tmp_path / "site.yml"
    config.write_text("hours_file: chain-hours.yml\n" + ROMASHKA.replace("    checks:", "    hours: restaurant\n"
                                                                         "    checks:"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value).startswith(f"{hours}: line 4, column 14: the file is not UTF-8 text"), str(caught.value)
    write_bytes(hours, as_notepad_saves(hours.read_bytes().decode("cp1251").replace("\r\n", "\n"), "UTF-16 LE"))
    windows = load_config(config).site("romashka-1").hours.windows
    assert [window.name for window in windows] == ["Перезапуск"]


def test_every_program_decodes_its_config_the_same_way(tmp_path):
    """The ingest, the receiver and the ingress read Notepad's "Unicode" files, and name the line of a mistake
    in them (the ingest and the receiver look the line up in the text they decoded)."""
    ingest = write_bytes(tmp_path / "ingest.yml", as_notepad_saves(textwrap.dedent("""\
        # дилер «Рога и копыта»
        distributors:
          rogaikopita599: {}
        sites:
          - id: cafe
            distributor: nobody
            getad: {serials: ["00123456790012"]}
        """), "UTF-16 LE"))
    with pytest.raises(ConfigError) as caught:
        load_ingest_config(ingest)
    assert str(caught.value) == (f"{ingest}: line 6: sites[0].distributor: expected one of the distributors "
                                 "(rogaikopita599), got the string 'nobody'")

    receiver = write_receiver_config(tmp_path, "http://127.0.0.1:9")
    text = receiver.read_text(encoding="utf-8").replace("chat_id: -1001000000001", "chat_id: группа")
    write_bytes(receiver, as_notepad_saves(text, "UTF-16 BE"))
    line = text.splitlines().index("    chat_id: группа") + 1
    with pytest.raises(ConfigError) as caught:
        load_receiver_config(receiver)
    assert str(caught.value).startswith(f"{receiver}: line {line}: routes.duty.chat_id: expected a chat id"), \
        str(caught.value)

    ingress = write_bytes(tmp_path / "ingress.yml", as_notepad_saves(
        "# вход\nfolder: x\ntls: {certificate: c.pem, key: k.pem}\npush:\n  listen: 0.0.0.0:9443\n"
        "  pushgateways: {main: 127.0.0.1:9091}\n", "ANSI"))
    with pytest.raises(ConfigError) as caught:
        load_ingress_config(ingress)
    assert str(caught.value) == (f"{ingress}: line 1, column 3: the file is not UTF-8 text; it is probably in the "
                                 f"Windows ANSI encoding (cp1251): {SAVE_AS_UTF8}")


# --- Windows paths in double quotes --------------------------------------------------------------------------


def test_an_unknown_escape_in_a_double_quoted_windows_path_says_how_to_write_the_path(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text('key_file: "C:\\data\\key"\n' + ROMASHKA, encoding="utf-8")
    assert str(load_error(path)) == (f"{path}: line 1, column 15: not valid YAML: found unknown escape character "
                                     f"'d' (in double quotes a backslash starts an escape: {QUOTING_HINT})")


def test_a_users_folder_in_double_quotes_gets_the_same_hint(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text(ROMASHKA + '      - name: pos-log\n        iiko_log: {folder: "C:\\Users\\cashier\\logs"}\n',
                    encoding="utf-8")
    message = str(load_error(path))
    assert message.startswith(f"{path}: line 10, column ") and QUOTING_HINT in message, message


@pytest.mark.parametrize("key", ["key_file", "hours_file", "targets_file"])
def test_a_path_whose_backslashes_became_a_newline_and_a_tab_is_refused_with_the_hint(tmp_path, key):
    path = tmp_path / "site.yml"
    path.write_text(f'{key}: "C:\\new\\table"\n' + ROMASHKA, encoding="utf-8")
    error = load_error(path)
    assert error.line == 1 and error.detail.startswith(f"line 1: {key}: expected "), str(error)
    assert "without control characters (newline, tab...), got the string 'C:\\new\\table' (in double quotes a " \
           f"backslash starts an escape (\\n is a newline, \\t a tab): {QUOTING_HINT})" in str(error), str(error)


def test_a_ca_file_whose_backslash_became_a_newline_is_refused_at_its_line(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text(ROMASHKA + '      - name: web\n        http:\n          url: https://127.0.0.1/\n'
                               '          tls: {ca_file: "C:\\new-ca.pem"}\n', encoding="utf-8")
    message = str(load_error(path))
    assert message.startswith(f"{path}: line 12: sites[0].checks[1].http.tls.ca_file: expected a PEM file of CA "
                              "certificates, without control characters"), message


@pytest.mark.parametrize("kind", ["getad", "iiko_log"])
def test_a_register_folder_whose_backslash_became_a_newline_is_refused_at_its_line(tmp_path, kind):
    path = tmp_path / "site.yml"
    path.write_text(ROMASHKA + f'      - name: tills\n        {kind}:\n          folder: "C:\\new\\table"\n',
                    encoding="utf-8")
    message = str(load_error(path))
    assert message.startswith(f"{path}: line 11: sites[0].checks[1].{kind}.folder: expected "), message
    assert "without control characters" in message and QUOTING_HINT in message, message


def test_a_password_file_saved_by_notepad_with_a_byte_order_mark_gives_the_password_without_it(tmp_path):
    (tmp_path / "shop.password").write_bytes(codecs.BOM_UTF8 + b"pass-from-notepad\r\n")
    path = tmp_path / "site.yml"
    path.write_text("push:\n  gateway: https://push.example.ru:9443\n  basic_auth: {username: site/romashka-1, "
                    "password: {file: shop.password}}\n" + ROMASHKA, encoding="utf-8")
    config = load_config(path)
    assert config.push["basic_auth"]["password"].reveal() == "pass-from-notepad"


def test_a_password_file_saved_as_ansi_is_refused_with_how_to_save_it(tmp_path):
    (tmp_path / "shop.password").write_bytes("пароль".encode("cp1251"))
    path = tmp_path / "site.yml"
    path.write_text("push:\n  gateway: https://push.example.ru:9443\n  basic_auth: {username: site/romashka-1, "
                    "password: {file: shop.password}}\n" + ROMASHKA, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: line 3: push.basic_auth.password: cannot read the secret file "
                              f"{tmp_path / 'shop.password'}: "), message
    assert SAVE_AS_UTF8 in message, message


def test_the_same_windows_path_in_single_quotes_or_with_forward_slashes_is_taken_as_written(tmp_path):
    for written in ("'C:\\new\\table'", "C:/new/table", "C:\\new\\table"):
        path = tmp_path / "site.yml"
        path.write_text(f"key_file: {written}\n" + ROMASHKA, encoding="utf-8")
        assert load_config(path).site("romashka-1")
        assert read_yaml(path)["key_file"] == written.strip("'")


# --- lines ------------------------------------------------------------------------------------------------

SITES = """\
sites:
  - id: shop-1
    labels: {client: acme}
    checks:
      - name: pc
        ping: {host: 127.0.0.1}
      - name: web
        http:
          url: http://127.0.0.1:9/
          valid_status_codes: [200, 302]
  - id: shop-2
    relay:
      - http://127.0.0.1:9182/metrics
      - http://127.0.0.1:9100/metrics
    checks:
      - name: port
        tcp: {host: 127.0.0.1, port: 80}
push:
  gateway: https://pgw.example.ru:9091
"""


@pytest.mark.parametrize("old, new, expected", [
    ("        ping: {host: 127.0.0.1}", "        retries: 3\n        ping: {host: 127.0.0.1}",
     "line 6: sites[0].checks[0].retries: expected one of the keys"),
    ("tcp: {host: 127.0.0.1, port: 80}", "tcp: {host: 127.0.0.1}",
     "line 17: sites[1].checks[0].tcp.port: expected a value (this key is required)"),
    ("[200, 302]", "[200, 702]", "line 10: sites[0].checks[1].http.valid_status_codes[1]: expected HTTP status"),
    ("http://127.0.0.1:9100/metrics", "127.0.0.1:9100/metrics", "line 14: sites[1].relay[1]: expected the URL"),
    ("  gateway: https://pgw.example.ru:9091", "  gateway: pgw.example.ru:9091",
     "line 19: push.gateway: expected the Pushgateway's URL"),
    ("  - id: shop-2", "  - id: shop-1", "line 11: sites[1].id: expected a site id not used before"),
    ("      - name: port", "      - name: pc", None),  # another site's check may have the same name
    ("        url: http://127.0.0.1:9/", "        url: http://127.0.0.1:9/\n          basic_auth: {username: u, "
     "password: {env: SITEWATCH_TEST_UNSET}}", "line 10: sites[0].checks[1].http.basic_auth.password: the "
     "environment variable SITEWATCH_TEST_UNSET is not set"),
])
def test_an_error_names_the_line_its_path_is_written_on(tmp_path, old, new, expected):
    assert old in SITES
    path = tmp_path / "site.yml"
    path.write_text(SITES.replace(old, new, 1), encoding="utf-8")
    if expected is None:
        load_config(path)
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {expected}"), str(caught.value)


def test_a_targets_file_mistake_names_the_targets_file_and_its_line(tmp_path):
    (tmp_path / "targets.yml").write_text(textwrap.dedent("""\
        targets:
          - name: kassa-1
            address: 10.0.0.5
          - name: kassa-2
            address: 10.0.0.256
            checks: [ping, tcp:99999]
        """), encoding="utf-8")
    path = tmp_path / "site.yml"
    path.write_text("targets_file: targets.yml\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    targets = str(tmp_path / "targets.yml")
    assert [str(problem) for problem in caught.value.problems] == [
        f"{targets}: line 5: targets[1].address: expected an IPv4 or IPv6 address or a host name (RFC 1123), with "
        "no port, scheme or path, got the string '10.0.0.256' (not a valid IPv4 address)",
        f"{targets}: line 6: targets[1].checks[1]: expected tcp:PORT with a port from 1 to 65535, got the string "
        "'tcp:99999'",
    ]


def test_a_maintenance_window_naming_a_check_the_site_lacks_names_its_line(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text(ROMASHKA.replace("    checks:", "    maintenance:\n      - name: Кодекс\n"
                                                    "        time: 03:00-03:30\n        checks: [kodeks]\n"
                                                    "    checks:"), encoding="utf-8")
    assert "line 9: sites[0].maintenance[0].checks: expected names of this site's checks (pc)" in \
        str(load_error(path))


# --- every mistake at once ----------------------------------------------------------------------------------

THREE_MISTAKES = """\
defaults:
  interval: 30s
sites:
  - id: shop-1
    labels: {client: acme}
    checks:
      - name: pc
        ping: {host: 127.0.0.1, count: five}
  - id: shop-2
    labels:
      1city: Kazan
    checks:
      - name: pc
        ping: {host: 127.0.0.1}
  - id: shop-3
    checks:
      - name: port
        tcp: {host: 127.0.0.1, port: 70000}
"""
THREE_PROBLEMS = [
    "line 8: sites[0].checks[0].ping.count: expected an integer from 1 to 100, got the string 'five'",
    "line 11: sites[1].labels.1city: expected a label name of letters, digits and '_' not starting with a digit, "
    "got the string '1city'",
    "line 18: sites[2].checks[0].tcp.port: expected an integer from 1 to 65535, got the number 70000",
]


def test_validate_lists_every_mistake_of_the_file_with_its_line_and_their_count(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text(THREE_MISTAKES, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("SITEWATCH_KEY", "SITEWATCH_KEY_FILE")}
    result = subprocess.run([str(EXPORTER), "validate", "--config", str(path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"config error: {path}: {problem}" for problem in THREE_PROBLEMS] + [
        "3 problems: the config is not valid"]


def test_the_one_line_message_is_the_first_problem_and_how_many_more_there_are(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text(THREE_MISTAKES, encoding="utf-8")
    error = load_error(path)
    assert str(error) == f"{path}: {THREE_PROBLEMS[0]} (and 2 more problems)"
    assert [problem.line for problem in error.problems] == [8, 11, 18]
    assert error.detail == THREE_PROBLEMS[0]


def test_every_key_of_one_check_and_a_wrong_push_section_are_reported_together(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text(SITES.replace("tcp: {host: 127.0.0.1, port: 80}", "tcp: {hots: 127.0.0.1, port: 0}\n"
                                                                      "        interval: 1y")
                    .replace("  gateway: https://pgw.example.ru:9091", "  gateway: pgw:9091"), encoding="utf-8")
    error = load_error(path)
    assert [(problem.line, problem.text.split(":")[0]) for problem in error.problems] == [
        (17, "sites[1].checks[0].tcp.hots"), (17, "sites[1].checks[0].tcp.port"),
        (17, "sites[1].checks[0].tcp.host"), (18, "sites[1].checks[0].interval"), (20, "push.gateway")]


# --- whatever the bytes --------------------------------------------------------------------------------------

MARKS = st.sampled_from([b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE,
                         codecs.BOM_UTF32_BE])
CONFIG_TEXT = st.sampled_from([ROMASHKA, SITES, THREE_MISTAKES, 'key_file: "C:\\data\\key"\n' + ROMASHKA])
ENCODED = st.builds(lambda text, encoding, cut: text.encode(encoding, errors="replace")[:cut], CONFIG_TEXT,
                    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "cp1251", "cp866"]),
                    st.integers(0, 2000))
ANY_BYTES = st.one_of(st.binary(max_size=400), st.builds(bytes.__add__, MARKS, st.binary(max_size=400)), ENCODED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_BYTES)
def test_whatever_bytes_a_file_holds_reading_it_raises_only_yaml_or_config_errors(data):
    try:
        parse_yaml(decode(data))
    except YamlError as err:
        assert str(err) and "Traceback" not in str(err)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "site.yml"
        path.write_bytes(data)
        try:
            read_yaml(path)
        except YamlError:
            pass
        try:
            load_config(path, read_secrets=False)
        except ConfigError as err:
            assert str(err).startswith(f"{path}: ") and err.problems, str(err)


# --- what an outside review found -------------------------------------------------------------------------


@pytest.mark.parametrize("written, shown", [("D:\\POS\\Logs", "\\u2029"), ("D:\\POS\\Lic", "\\u2028"),
                                            ("D:\\POS\\_new", "\\xa0")])
def test_escapes_that_become_invisible_separators_in_a_path_are_refused_too(tmp_path, written, shown):
    # \P, \L and \_ are valid YAML escapes: a paragraph separator, a line separator and a no-break space.
    path = tmp_path / "site.yml"
    path.write_text(ROMASHKA + f'      - name: pos-log\n        iiko_log: {{folder: "{written}"}}\n', encoding="utf-8")
    message = str(load_error(path))
    assert message.startswith(f"{path}: line 10: sites[0].checks[1].iiko_log.folder: expected "), message
    assert shown in message and QUOTING_HINT in message, message


@pytest.mark.parametrize("character", ["\x1a", "\x0c", "\x1b"])
def test_a_stray_control_character_is_named_with_its_line_on_one_line(tmp_path, character):
    path = write_bytes(tmp_path / "site.yml", (ROMASHKA + character).encode("utf-8"))
    message = str(load_error(path))
    assert "\n" not in message, message
    assert f"line 9, column 1: the file holds the control character U+{ord(character):04X}" in message, message


@pytest.mark.parametrize("hidden, line, column", [("\ufeff", 3, 1), ("\u2028", 1, 5)])
def test_an_invisible_mark_or_separator_is_named_where_it_stands(tmp_path, hidden, line, column):
    text = ROMASHKA.replace("sites:\n  - id", "sites:\n" + hidden + "  - id") if hidden == "\ufeff" else \
        ROMASHKA.replace("# Кафе", "# Ка" + hidden + "фе")
    message = str(load_error(write_bytes(tmp_path / "site.yml", text.encode("utf-8"))))
    assert f"line {line}, column {column}: the file holds the invisible character U+{ord(hidden):04X}" in message, \
        message


def test_an_ansi_file_with_old_mac_line_ends_is_named_at_the_right_line(tmp_path):
    data = ROMASHKA.replace("\n", "\r").encode("cp1251")
    message = str(load_error(write_bytes(tmp_path / "site.yml", data)))
    assert "line 1, column 3: the file is not UTF-8 text" in message, message


def test_a_password_in_an_address_without_its_scheme_is_not_shown_by_validate_nor_logged(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text('push: {gateway: "pushuser:S3cretPw@pgw.example.ru:9091"}\n' + ROMASHKA, encoding="utf-8")
    result = subprocess.run([str(EXPORTER), "validate", "--config", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "push.gateway" in result.stderr, result.stderr
    assert "S3cretPw" not in result.stderr
    log = tmp_path / "pusher.log"
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "sitewatch-pusher"), "--config", str(path), "--once",
                             "--log.file", str(log)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "S3cretPw" not in result.stderr, result.stderr
    assert "push.gateway" in log.read_text(encoding="utf-8") and "S3cretPw" not in log.read_text(encoding="utf-8")


def test_a_key_file_saved_as_unicode_by_notepad_still_holds_the_key(tmp_path):
    from exporter import secrets

    key = secrets.new_key().decode()
    (tmp_path / "key").write_bytes(codecs.BOM_UTF16_LE + (key + "\r\n").encode("utf-16-le"))
    path = tmp_path / "site.yml"
    path.write_text("key_file: key\npush:\n  gateway: https://pgw.example.ru:9091\n  basic_auth: {username: u, "
                    f"password: {secrets.encrypt('pw-in-unicode-key', key.encode())}}}\n" + ROMASHKA,
                    encoding="utf-8")
    assert load_config(path).push["basic_auth"]["password"].reveal() == "pw-in-unicode-key"


def test_the_receivers_outbox_path_with_a_newline_from_double_quotes_is_refused(tmp_path):
    config = write_receiver_config(tmp_path, "http://127.0.0.1:9", outbox='"C:\\new-outbox.db"')
    with pytest.raises(ConfigError) as caught:
        load_receiver_config(config)
    assert "outbox.path: expected a path for the outbox database file, without control characters" in \
        str(caught.value), str(caught.value)
