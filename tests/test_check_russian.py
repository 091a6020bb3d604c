"""``sitewatch-exporter check --lang ru`` as a technician on a Russian till PC reads it: a real run against
real things on loopback (a listening and a closed TCP port, an HTTPS server started here, ICMP to 127.0.0.1,
a Mitsu register on a pty, a Кодекс server, getad files and an iiko log with a swapped ФН), checked for
Russian words, numbers and dates, plural forms, and for any Latin word that is not a name from the config.

The English table and the JSON form must not change: the same config is run without the option too.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alertmanager.render_numbers import plural
from conftest import ROOT, copy_example_logs, copy_getad_example, needs_root, write_config
from exporter import oneshot_ru
from exporter.checks.registry import CHECK_TYPES
from exporter.config import load_config
from exporter.hours import describe
from simulators.kodeks import PASSWORD as KODEKS_PASSWORD
from simulators.kodeks import USERNAME as KODEKS_USERNAME
from simulators.kodeks import Catalog, FakeKodeksServer
from simulators.mitsu import MitsuPtySimulator, MitsuScenario

MOSCOW = ZoneInfo("Europe/Moscow")
PAGE_BYTES = 12 * 1024  # "12 КБ"
MITSU_MODEL = "MITSU-1-F 001"  # model and its version (T1188), as the register names itself
# Latin a Russian reader meets here besides names taken from the config: iiko is the POS program's own
# name, written so on its box and in its windows.
LATIN_ALLOWED = {"iiko"}
RUSSIAN_DAYS = "пн|вт|ср|чт|пт|сб|вс"
# Names the registers give themselves and their licences, shown as they give them: the model, and a
# licence named after a format version written with a point, as the law and every till write it.
REGISTER_NAMES = (MITSU_MODEL, "ФФД 1.2")


# --- the things the checks look at ---------------------------------------------------------------------

@dataclass
class TlsSite:
    url: str
    ca_file: Path
    not_valid_after: dt.datetime


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/ok":
            body = ("<html><body>Главная страница" + " " * PAGE_BYTES).encode()[:PAGE_BYTES]
            status = 200
        else:
            body, status = b"<html>no such page</html>", 404
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _TlsServer(http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def _self_signed(folder: Path) -> tuple[Path, Path, dt.datetime]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    not_after = now + dt.timedelta(days=100)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file, not_after


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory):
    cert_file, key_file, not_after = _self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = _TlsServer(("127.0.0.1", 0), _PageHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield TlsSite(f"https://127.0.0.1:{server.server_address[1]}", cert_file, not_after)
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def ports():
    """A port that listens, and one that is bound but does not listen: a connection to it is refused."""
    listening, silent = socket.socket(), socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(8)
    silent.bind(("127.0.0.1", 0))
    yield listening.getsockname()[1], silent.getsockname()[1]
    listening.close()
    silent.close()


@pytest.fixture(scope="module")
def register():
    """A Mitsu register on a pty: its ФН runs out in 300 days and 3 documents wait for the OFD since 4 days."""
    today = dt.datetime.now(MOSCOW)
    scenario = MitsuScenario(fn_expiry=(today.date() + dt.timedelta(days=300)).isoformat(), unsent=3,
                             first_unsent=(today - dt.timedelta(days=4)).strftime("%Y-%m-%d %H:%M"))
    with MitsuPtySimulator(scenario) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def kodeks():
    server = FakeKodeksServer().start()
    server.scenario.catalogs = [Catalog("/docs"), Catalog("/docs2"), Catalog("/law")]
    yield server
    server.stop()


@dataclass
class Run:
    config: Path
    stdout: str
    stderr: str
    returncode: int


def run_check(config: Path, *extra: str, language: str | None = None) -> Run:
    env = {**os.environ, "KODEKS_TEST_PASSWORD": KODEKS_PASSWORD}
    env.pop("SITEWATCH_LANG", None)
    if language is not None:
        env["SITEWATCH_LANG"] = language
    done = subprocess.run([sys.executable, "-m", "exporter.cli", "check", "--config", str(config), *extra],
                          capture_output=True, text=True, encoding="utf-8", timeout=90, cwd=ROOT, env=env)
    return Run(config, done.stdout, done.stderr, done.returncode)


@pytest.fixture(scope="module")
def site_config(tmp_path_factory, tls_site, ports, register, kodeks) -> Path:
    folder = tmp_path_factory.mktemp("site")
    copy_getad_example(folder / "getad")
    copy_example_logs("iiko-logs", folder / "logs")
    listening, silent = ports
    return write_config(folder / "site.yml", textwrap.dedent(f"""
        sites:
          - id: shop
            timezone: Europe/Moscow
            hours:
              open: {{daily: "09:00-21:00"}}
            checks:
              - name: pc
                ping: {{host: 127.0.0.1, count: 3, interval: 100ms, timeout: 1s}}
              - name: till-service
                tcp: {{host: 127.0.0.1, port: {listening}}}
              - name: closed-port
                tcp: {{host: 127.0.0.1, port: {silent}}}
              - name: main-page
                http: {{url: "{tls_site.url}/ok", tls: {{ca_file: "{tls_site.ca_file}"}}}}
              - name: price-list
                http: {{url: "{tls_site.url}/missing", tls: {{ca_file: "{tls_site.ca_file}"}}}}
              - name: kodeks
                timeout: 10s
                kodeks: {{url: "{kodeks.url}", username: {KODEKS_USERNAME}, password: {{env: KODEKS_TEST_PASSWORD}}}}
              - name: till-1
                timeout: 20s
                kkt: {{driver: mitsu, port: "{register.device}"}}
          - id: cafe
            timezone: Europe/Moscow
            checks:
              - name: getad
                getad: {{folder: "{folder / 'getad'}"}}
              - name: pos-log
                iiko_log: {{folder: "{folder / 'logs'}", format: atol}}
    """))


@pytest.fixture(scope="module")
def russian(site_config) -> Run:
    return run_check(site_config, "--lang", "ru")


def row(run: Run, check: str) -> str:
    found = [line for line in run.stdout.splitlines() if re.match(rf"\w+\s+{re.escape(check)}\s", line)]
    assert len(found) == 1, run.stdout
    return found[0]


# --- what a reader must never meet --------------------------------------------------------------------

def config_names(config: Path) -> list[str]:
    """The names a reader may see in Latin because the config (or the register) writes them so."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KODEKS_TEST_PASSWORD", KODEKS_PASSWORD)
        loaded = load_config(config)
    names = [site.id for site in loaded.sites] + list(REGISTER_NAMES)
    for check in loaded.checks():
        names += [check.name, oneshot_ru.target(check)]
    return sorted(filter(None, set(names)), key=len, reverse=True)  # a URL before its host


def reader_problems(text: str, names: list[str]) -> list[str]:
    plain = "\n".join(line for line in text.splitlines() if line != oneshot_ru.ENGLISH_HINT)
    for name in names:
        plain = plain.replace(name, " ")
    plain = re.sub(r"\b\d{2}\.\d{2}\.\d{4}\b", " ", plain)  # dates: 05.12.2026
    plain = re.sub(rf"\b(?:{RUSSIAN_DAYS}) \d{{2}}\.\d{{2}}\b", " ", plain)  # the hours line's "сб 05.12"
    problems = [f"Latin word {word!r}" for word in re.findall(r"[A-Za-z]{2,}", plain) if word not in LATIN_ALLOWED]
    problems += [f"English unit in {unit!r}" for unit in re.findall(r"\b\d+\s?[A-Za-z]{1,3}\b", plain)]
    problems += [f"decimal point in {number!r}" for number in re.findall(r"\d+\.\d+", plain)]
    for forms in (("проверка", "проверки", "проверок"), ("касса", "кассы", "касс"),
                  ("каталог", "каталога", "каталогов")):
        # after "из" or "у" the numeral takes the genitive: "из 5 проверок", "у 1 кассы"
        pattern = rf"(?<!из )(?<!у )(?<![\d\u00a0])(\d+)\s({'|'.join(forms)})\b"
        for number, form in re.findall(pattern, plain):
            if form != plural(int(number), *forms):
                problems.append(f"{number} {form}: should be {number} {plural(int(number), *forms)}")
    return problems


# --- the Russian table --------------------------------------------------------------------------------

def test_the_russian_table_has_russian_headers_types_and_verdicts(russian):
    assert russian.returncode == 1, russian.stdout + russian.stderr
    assert russian.stdout.splitlines()[0].split() == ["ТОЧКА", "ПРОВЕРКА", "ВИД", "ИТОГ", "ПРИЧИНА", "ВРЕМЯ",
                                                       "ПОКАЗАТЕЛИ"]
    for check, kind, verdict in (("pc", "пинг", "в норме"), ("till-service", "порт", "в норме"),
                                 ("closed-port", "порт", "сбой"), ("main-page", "веб-страница", "в норме"),
                                 ("price-list", "веб-страница", "сбой"), ("kodeks", "Кодекс", "в норме"),
                                 ("till-1", "касса", "в норме"), ("getad", "файлы касс", "в норме"),
                                 ("pos-log", "журнал iiko", "сбой")):
        assert re.search(rf"\s{kind}\s+{verdict}(\s|$)", row(russian, check)), row(russian, check)
    assert "OK" not in russian.stdout and "FAIL" not in russian.stdout


def test_every_check_type_has_russian_words_and_figures():
    assert set(CHECK_TYPES) <= set(oneshot_ru.TYPE_WORDS)
    assert set(CHECK_TYPES) <= set(oneshot_ru.FIGURES)


def test_times_are_in_milliseconds_or_seconds_with_a_decimal_comma(russian):
    for check in ("pc", "till-service", "main-page", "till-1"):
        assert re.search(r"\s(\d+ мс|\d,\d с|\d+ с)\s", row(russian, check)), row(russian, check)


def test_the_figures_are_rebuilt_in_russian_from_the_samples(russian, tls_site, register, kodeks):
    assert re.search(r"ответ в среднем \d+,\d+ мс, потерь 0 %$", row(russian, "pc")), row(russian, "pc")
    assert re.search(r"соединение за \d+(,\d+)? мс$", row(russian, "till-service"))
    certificate = tls_site.not_valid_after.astimezone(MOSCOW).strftime("%d.%m.%Y")
    assert re.search(rf"код 200 за \d+(,\d+)? мс, 12 КБ, сертификат до {certificate}$", row(russian, "main-page")), \
        row(russian, "main-page")
    assert f"3 каталога, регистрационный файл до {kodeks.scenario.licence_until}, соединений 7 из 25" in \
        row(russian, "kodeks")
    # The register's own dates, as the fixture set them (a midnight may come between it and this test).
    fn_until = dt.date.fromisoformat(register.scenario.fn_expiry).strftime("%d.%m.%Y")
    oldest = dt.datetime.strptime(register.scenario.first_unsent, "%Y-%m-%d %H:%M").strftime("%d.%m.%Y")
    assert row(russian, "till-1").endswith(
        f"{MITSU_MODEL} №065001234567890, ФН до {fn_until}, не отправлено в ОФД документов: 3, "
        f"самый старый от {oldest}"), row(russian, "till-1")
    assert row(russian, "getad").endswith("  1 касса")
    assert row(russian, "pos-log").endswith("ФН не совпадает у 1 кассы из 1")


def getad_dates(folder) -> tuple[dt.date, dt.date]:
    """The ФН's and the «ФФД 1.2» licence's last day in the GetAD file the site's check reads."""
    register = json.loads((folder / "00123456790012.json").read_text(encoding="utf-8"))
    return (dt.date.fromisoformat(register["dateTime_end"][:10]),
            dt.date.fromisoformat(register["licenses"]["10"]["dateUntil"][:10]))


def test_registers_of_a_folder_and_a_log_are_listed_one_a_line(russian, site_config):
    out = russian.stdout
    fn_until, licence_until = getad_dates(site_config.parent / "getad")
    assert (f"\ncafe/getad:\n  АТОЛ 22 v2 Ф №00123456790012, ФН до {fn_until:%d.%m.%Y}, лицензия «ФФД 1.2» до "
            f"{licence_until:%d.%m.%Y}\n") in out
    assert ("\ncafe/pos-log:\n  касса №00123456790012: в журнале ФН 7380440700099999, а при чтении кассы был "
            "ФН 7380440700067159: ФН заменили\n") in out


def test_a_fn_a_licence_and_a_registration_file_that_ran_out_are_said_in_the_past(tmp_path):
    fn_until, licence_until = copy_getad_example(tmp_path / "getad", fn_in_days=-2, licence_in_days=-3)
    server = FakeKodeksServer().start()
    try:
        server.scenario.licence_until = "30.11.2026"
        config = write_config(tmp_path / "site.yml", textwrap.dedent(f"""
            sites:
              - id: cafe
                timezone: Europe/Moscow
                checks:
                  - name: getad
                    getad: {{folder: "{tmp_path / 'getad'}"}}
                  - name: kodeks
                    kodeks: {{url: "{server.url}", username: {KODEKS_USERNAME},
                              password: {{env: KODEKS_TEST_PASSWORD}}}}
        """))
        done = run_check(config, "--lang", "ru")
    finally:
        server.stop()
    assert (f"АТОЛ 22 v2 Ф №00123456790012, срок ФН истёк {fn_until:%d.%m.%Y}, лицензия «ФФД 1.2» действовала "
            f"до {licence_until:%d.%m.%Y}\n") in done.stdout, done.stdout
    assert "регистрационный файл действовал до 30.11.2026" in row(done, "kodeks"), done.stdout


def test_failed_checks_name_their_target_the_reason_and_what_to_do_without_english(russian, ports, tls_site):
    out = russian.stdout
    _, silent = ports
    assert (f"\nshop/closed-port (127.0.0.1:{silent}): соединение отклонено, порт закрыт.\n"
            "  На этом порту ничего не слушает или его закрывает брандмауэр: проверьте, запущена ли служба.\n") in out
    assert f"\nshop/price-list ({tls_site.url}/missing): сервер ответил кодом ошибки (код 404).\n" in out
    assert "\ncafe/pos-log (" in out and "): в журнале кассовой программы другой ФН.\n" in out
    assert re.search(r"сбой\s+соединение отклонено, порт закрыт\s", row(russian, "closed-port"))
    # the English messages stay for the English table
    assert "connection refused" not in out and "expected 200-299" not in out and "the POS log shows" not in out
    assert out.count(oneshot_ru.ENGLISH_HINT) == 1


def test_the_summary_counts_with_russian_plural_forms_and_the_hours_line_is_russian(russian):
    lines = russian.stdout.splitlines()
    assert "В норме 6 проверок из 9." in lines
    assert re.fullmatch(rf"shop: точка по графику (открыта|закрыта) до \d\d:\d\d(, ({RUSSIAN_DAYS}) \d\d\.\d\d)?\.",
                        lines[-1]), lines[-1]


def test_no_latin_word_decimal_point_or_wrong_plural_reaches_the_reader(russian, site_config):
    assert not reader_problems(russian.stdout, config_names(site_config)), russian.stdout


def test_the_reader_check_itself_catches_english(site_config):
    problems = reader_problems("shop  pc  ping  OK  timeout  1.5 s\nВ норме 5 проверки из 9.\n",
                               config_names(site_config))
    assert "Latin word 'ping'" in problems and "Latin word 'OK'" in problems and "Latin word 'timeout'" in problems
    assert "decimal point in '1.5'" in problems and "5 проверки: should be 5 проверок" in problems


# --- the language switch, and what it must not change ----------------------------------------------------

def test_without_the_option_the_table_stays_english(site_config):
    english = run_check(site_config)
    assert english.returncode == 1
    assert english.stdout.splitlines()[0].split() == ["SITE", "CHECK", "TYPE", "RESULT", "REASON", "TIME", "FIGURES"]
    assert row(english, "closed-port").split()[:5] == ["shop", "closed-port", "tcp", "FAIL", "refused"]
    assert "6 of 9 checks passed." in english.stdout
    assert "connection refused by 127.0.0.1:" in english.stdout
    assert re.search(r"^shop: (open|closed) by its hours until ", english.stdout, re.M)
    assert not re.search("[а-я]{3,}", english.stdout.replace("ФН", "").split("\n\n")[0].splitlines()[0])


def test_sitewatch_lang_sets_the_default_and_the_option_wins(site_config):
    from_environment = run_check(site_config, "--site", "cafe", language="ru")
    assert from_environment.stdout.startswith("ТОЧКА"), from_environment.stdout
    option_wins = run_check(site_config, "--site", "cafe", "--lang", "en", language="ru")
    assert option_wins.stdout.startswith("SITE"), option_wins.stdout
    assert "1 of 2 checks passed." in option_wins.stdout


def test_an_unknown_language_is_refused_naming_where_it_came_from(site_config):
    done = run_check(site_config, "--site", "cafe", language="de")
    assert done.returncode == 2
    assert "'de' is not a language of the check table: expected en or ru" in done.stderr
    assert "$SITEWATCH_LANG" in done.stderr


def test_json_is_the_same_in_both_languages(site_config):
    english = json.loads(run_check(site_config, "--site", "cafe", "--format", "json").stdout)
    russian = json.loads(run_check(site_config, "--site", "cafe", "--format", "json", "--lang", "ru").stdout)

    def steady(records):
        return [{key: value for key, value in record.items() if key != "duration_seconds"} for record in records]

    assert steady(russian) == steady(english)
    assert any("the POS log shows" in record["message"] for record in russian)


# --- the pieces -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("passed, total, expected", [
    (1, 1, "Проверка в норме."),
    (2, 2, "Все 2 проверки в норме."),
    (5, 5, "Все 5 проверок в норме."),
    (11, 11, "Все 11 проверок в норме."),
    (21, 21, "Все 21 проверка в норме."),
    (22, 22, "Все 22 проверки в норме."),
    (25, 25, "Все 25 проверок в норме."),
    (101, 101, "Все 101 проверка в норме."),
    (111, 111, "Все 111 проверок в норме."),
    (1, 2, "В норме 1 проверка из 2."),
    (2, 5, "В норме 2 проверки из 5."),
    (5, 11, "В норме 5 проверок из 11."),
    (11, 21, "В норме 11 проверок из 21."),
    (21, 22, "В норме 21 проверка из 22."),
    (22, 25, "В норме 22 проверки из 25."),
    (25, 101, "В норме 25 проверок из 101."),
    (101, 111, "В норме 101 проверка из 111."),
    (111, 1112, "В норме 111 проверок из 1\u00a0112."),
    (0, 1, "Проверка не прошла."),
    (0, 21, "Не прошла ни одна из 21 проверки."),
    (0, 25, "Не прошла ни одна из 25 проверок."),
    (0, 0, "Проверок нет."),
])
def test_summary_plural_forms(passed, total, expected):
    assert oneshot_ru.summary(passed, total) == expected


def test_numbers_sizes_and_times_as_a_russian_reader_writes_them():
    assert oneshot_ru.milliseconds(0.000049) == "0,05 мс"
    assert oneshot_ru.milliseconds(0.0042) == "4,2 мс"
    assert oneshot_ru.milliseconds(0.00999) == "10 мс"
    assert oneshot_ru.milliseconds(0.041) == "41 мс"
    assert oneshot_ru.milliseconds(12.5) == "12\u00a0500 мс"
    assert oneshot_ru.elapsed(0.041) == "41 мс"
    assert oneshot_ru.elapsed(0.9996) == "1,0 с"
    assert oneshot_ru.elapsed(1.23) == "1,2 с"
    assert oneshot_ru.elapsed(9.96) == "10 с"
    assert oneshot_ru.elapsed(73) == "1 мин 13 с"
    assert [oneshot_ru.size(n) for n in (1, 3, 512, 1536, 12 * 1024, 1024 ** 2 - 1, 3_565_158, 5 * 1024 ** 4)] == \
        ["1 байт", "3 байта", "512 байт", "1,5 КБ", "12 КБ", "1,0 МБ", "3,4 МБ", "5\u00a0120 ГБ"]


def test_the_hours_line_in_russian_and_unchanged_in_english(tmp_path):
    config = load_config(write_config(tmp_path / "site.yml", textwrap.dedent("""
        sites:
          - id: cafe
            timezone: Europe/Moscow
            hours:
              open: {daily: "11:00-23:00"}
            maintenance:
              - {name: Резервная копия, time: "04:00-05:00"}
            checks: [{name: pc, ping: {host: 127.0.0.1}}]
          - id: kiosk
            timezone: Europe/Moscow
            maintenance:
              - {name: Перезапуск, time: "03:00-03:30", checks: [pc]}
            checks: [{name: pc, ping: {host: 127.0.0.1}}]
    """)))
    cafe, kiosk = config.site("cafe").hours, config.site("kiosk").hours

    def moscow(text: str) -> float:
        return dt.datetime.fromisoformat(text).replace(tzinfo=MOSCOW).timestamp()

    # 05.12.2026 is a Saturday
    assert describe(cafe, MOSCOW, moscow("2026-12-05T12:00"), "ru") == "точка по графику открыта до 23:00"
    assert describe(cafe, MOSCOW, moscow("2026-12-05T23:30"), "ru") == \
        "точка по графику закрыта до 11:00, вс 06.12"
    assert describe(cafe, MOSCOW, moscow("2026-12-06T04:10"), "ru") == \
        "точка по графику закрыта до 11:00; сейчас обслуживание: Резервная копия"
    assert describe(kiosk, MOSCOW, moscow("2026-12-06T03:10"), "ru") == \
        "точка работает круглосуточно; сейчас обслуживание: Перезапуск (pc)"
    assert describe(cafe, MOSCOW, moscow("2026-12-05T23:30")) == "closed by its hours until Sun 06.12 11:00"
    assert describe(kiosk, MOSCOW, moscow("2026-12-06T03:10")) == "open all the time; in maintenance now: Перезапуск (pc)"


# --- without ICMP rights ---------------------------------------------------------------------------------

@pytest.fixture
def private_netns():
    name = f"swru-{os.getpid()}-{time.monotonic_ns() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


@needs_root
def test_without_icmp_rights_the_warning_and_the_advice_are_russian(private_netns):
    # A new namespace has no unprivileged ICMP and 'nobody' has no CAP_NET_RAW: pings cannot be sent.
    folder = Path(tempfile.mkdtemp(prefix="sitewatch-"))
    try:
        folder.chmod(0o755)
        config = write_config(folder / "site.yml", "sites:\n  - id: shop\n    checks:\n"
                                                   "      - name: pc\n        ping: {host: 127.0.0.1, count: 1}\n")
        config.chmod(0o644)
        done = subprocess.run(["ip", "netns", "exec", private_netns, "setpriv", "--reuid=65534", "--regid=65534",
                               "--clear-groups", "--inh-caps=-all", sys.executable, "-m", "exporter.cli", "check",
                               "--config", str(config), "--lang", "ru"],
                              cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=60)
    finally:
        shutil.rmtree(folder)
    if "No module named" in done.stderr:
        pytest.skip("the 'nobody' account cannot read the virtual environment here")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == oneshot_ru.PING_WARNING
    assert "нельзя отправлять пинг" in done.stderr
    assert re.search(r"сбой\s+нет прав на проверку", row(Run(config, done.stdout, "", 1), "pc"))
    assert ("\nshop/pc (127.0.0.1): нет прав на проверку.\n"
            "  Пинг требует особых прав: повторите команду от имени суперпользователя.\n") in done.stdout
    assert "Проверка не прошла." in done.stdout
    assert not reader_problems(done.stdout, ["shop", "pc", "127.0.0.1"]), done.stdout



def test_a_locale_in_sitewatch_lang_names_its_language():
    from exporter.oneshot import table_language

    assert table_language("ru_RU.UTF-8") == "ru" and table_language("RU") == "ru" and table_language("en-US") == "en"
