"""The kodeks check against the fake Кодекс server over real HTTP: catalogs, maintenance, auth, fallback to
/sysinfo, garbage pages, a dead server, the licence date in the site's time zone, and one session."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT, free_port, run_check, value_of_metric, wait_until, write_config
from exporter.checks.kodeks import PageFormatError, parse_admin_title, parse_metrics_page
from exporter.config import ConfigError, load_config
from exporter.httpclient import HttpClient
from exporter.icmp.engine import PingEngine
from exporter.runner import run_once
from simulators.kodeks import PASSWORD, USERNAME, Catalog, FakeKodeksServer


@pytest.fixture
def kodeks():
    server = FakeKodeksServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def kodeks_password(monkeypatch):
    monkeypatch.setenv("KODEKS_TEST_PASSWORD", PASSWORD)


def kodeks_check(tmp_path, url: str, extra: str = "", timezone: str = "Europe/Moscow", timeout: str = "5s",
                 credentials: bool = True):
    auth = f"username: {USERNAME}, password: {{env: KODEKS_TEST_PASSWORD}}," if credentials else ""
    config = write_config(tmp_path / "site.yml", textwrap.dedent(f"""
        sites:
          - id: office
            timezone: {timezone}
            checks:
              - name: kodeks
                timeout: {timeout}
                kodeks: {{url: "{url}", {auth} {extra}}}
    """))
    return load_config(config).checks()[0]


def samples(result) -> dict[tuple[str, tuple], float]:
    return {(s.name, s.labels): s.value for s in result.samples}


def all_fine(server: FakeKodeksServer) -> None:
    server.scenario.catalogs = [Catalog("/docs"), Catalog("/docs2"), Catalog("/law")]


def test_a_healthy_server_passes_with_every_catalog_ok_and_its_registration(tmp_path, kodeks):
    all_fine(kodeks)
    result = run_check(kodeks_check(tmp_path, kodeks.url))
    assert result.success, result.message
    values = samples(result)
    for path in ("/docs", "/docs2", "/law"):
        assert values[("sitewatch_kodeks_main_page_ok", (("catalog", path),))] == 1.0
        assert values[("sitewatch_kodeks_product_control_ok", (("catalog", path),))] == 1.0
        assert values[("sitewatch_kodeks_service_message", (("catalog", path),))] == 0.0
    assert values[("sitewatch_kodeks_maintenance", ())] == 0.0
    assert values[("sitewatch_kodeks_info", (("registration_number", "123-456-789"), ("version", "6.4.5.127")))] == 1
    assert values[("sitewatch_kodeks_sessions", ())] == 7 and values[("sitewatch_kodeks_sessions_limit", ())] == 25
    assert "3 catalog(s) via /sysmon/metrics" in result.figures
    assert f"licence until {kodeks.scenario.licence_until}" in result.figures


def test_licence_date_becomes_the_end_of_that_day_in_the_sites_time_zone(tmp_path, kodeks):
    kodeks.scenario.licence_until = "31.12.2026"
    expiry = {}
    for zone in ("Europe/Moscow", "Asia/Vladivostok"):
        result = run_check(kodeks_check(tmp_path, kodeks.url, timezone=zone))
        expiry[zone] = samples(result)[("sitewatch_kodeks_licence_expiry_timestamp_seconds", ())]
    # "до 31.12.2026" holds through that day: it runs out at 1 January 2027, 00:00 site time.
    assert expiry["Europe/Moscow"] == datetime(2027, 1, 1, tzinfo=ZoneInfo("Europe/Moscow")).timestamp()
    assert expiry["Europe/Moscow"] == datetime(2026, 12, 31, 21, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert expiry["Europe/Moscow"] - expiry["Asia/Vladivostok"] == 7 * 3600


def test_a_broken_main_page_in_one_catalog_names_that_catalog(tmp_path, kodeks):
    kodeks.scenario.catalogs = [Catalog("/docs"), Catalog("/docs2", main_page_problem=True)]
    result = run_check(kodeks_check(tmp_path, kodeks.url))
    assert not result.success and result.reason == "main_page"
    assert result.message == "catalog /docs2: the main page is not built correctly"
    values = samples(result)
    assert values[("sitewatch_kodeks_main_page_ok", (("catalog", "/docs2"),))] == 0.0
    assert values[("sitewatch_kodeks_main_page_ok", (("catalog", "/docs"),))] == 1.0


def test_a_product_control_warning_with_a_status_is_exported_and_explained(tmp_path, kodeks):
    kodeks.scenario.catalogs = [Catalog("/docs"), Catalog("/law", product_control_problem=True,
                                                          statuses=["no required volume DB", "update DB"])]
    result = run_check(kodeks_check(tmp_path, kodeks.url))
    assert not result.success and result.reason == "product_control"
    assert "catalog /law" in result.message and "check the set of databases" in result.message
    assert "no required volume DB" in result.message
    values = samples(result)
    assert values[("sitewatch_kodeks_product_control_ok", (("catalog", "/law"),))] == 0.0
    assert values[("sitewatch_kodeks_main_page_ok", (("catalog", "/law"),))] == 1.0
    for status in ("no required volume DB", "update DB"):
        assert values[("sitewatch_kodeks_catalog_status_info", (("catalog", "/law"), ("status", status)))] == 1.0


def test_maintenance_mode_fails_with_reason_maintenance(tmp_path, kodeks):
    kodeks.scenario.maintenance = True
    result = run_check(kodeks_check(tmp_path, kodeks.url))
    assert not result.success and result.reason == "maintenance"
    assert samples(result)[("sitewatch_kodeks_maintenance", ())] == 1.0
    assert "maintenance mode" in result.message and "технического обслуживания" in result.message


def test_a_service_message_on_a_main_page_is_reported_for_that_catalog(tmp_path, kodeks):
    all_fine(kodeks)
    kodeks.scenario.service_message_on = "/docs2"
    result = run_check(kodeks_check(tmp_path, kodeks.url))
    assert not result.success and result.reason == "service_message"
    assert "catalog /docs2" in result.message and "Служебное сообщение" in result.message
    assert samples(result)[("sitewatch_kodeks_service_message", (("catalog", "/docs2"),))] == 1.0


def test_custom_markers_replace_the_defaults(tmp_path, kodeks):
    all_fine(kodeks)
    result = run_check(kodeks_check(tmp_path, kodeks.url, extra="service_message_markers: 'Новое в закон'"))
    assert result.reason == "service_message" and "Новое в законодательстве" in result.message


def test_a_wrong_password_fails_with_reason_auth(tmp_path, kodeks, monkeypatch):
    monkeypatch.setenv("KODEKS_TEST_PASSWORD", "not-the-password")
    result = run_check(kodeks_check(tmp_path, kodeks.url))
    assert not result.success and result.reason == "auth"
    assert "smartlogin" in result.message and "HTTP 401" in result.message
    assert "not-the-password" not in result.message


def test_without_credentials_sysmon_says_to_set_them(tmp_path, kodeks):
    result = run_check(kodeks_check(tmp_path, kodeks.url, credentials=False))
    assert result.reason == "auth" and "set username and password" in result.message


def test_an_older_server_without_sysmon_is_read_through_sysinfo(tmp_path, kodeks):
    all_fine(kodeks)
    kodeks.scenario.sysmon = False
    result = run_check(kodeks_check(tmp_path, kodeks.url))
    assert result.success, result.message
    assert "via /sysinfo/metrics" in result.figures
    assert kodeks.scenario.requests[:2] == ["/sysmon/metrics", "/sysinfo/metrics"]


def test_a_page_in_another_format_fails_with_reason_parse_saying_what_came(tmp_path, kodeks):
    kodeks.scenario.garbage = True
    result = run_check(kodeks_check(tmp_path, kodeks.url))
    assert not result.success and result.reason == "parse"
    assert "text/html" in result.message and "Welcome to nginx" in result.message
    assert not any(name.startswith("sitewatch_kodeks_main_page") for name, _ in samples(result))


def test_a_server_that_is_down_fails_with_reason_refused(tmp_path):
    result = run_check(kodeks_check(tmp_path, f"http://127.0.0.1:{free_port()}"))
    assert not result.success and result.reason == "refused"


def test_a_server_slower_than_the_timeout_fails_with_reason_timeout(tmp_path, kodeks):
    kodeks.scenario.delay = 1.5
    result = run_check(kodeks_check(tmp_path, kodeks.url, timeout="1s"))
    assert not result.success and result.reason == "timeout"
    assert result.duration < 1.6


def test_the_session_cookie_is_kept_between_runs_of_one_check(tmp_path, kodeks):
    check = kodeks_check(tmp_path, kodeks.url)
    memory: dict = {}
    engine, http = PingEngine(), HttpClient()
    try:
        for _ in range(3):
            asyncio.run(run_once(check, engine, http, memory))
    finally:
        http.close()
    assert len(kodeks.scenario.requests) == 15  # 3 runs x (metrics, 3 main pages, admin title)
    assert kodeks.scenario.sessions_opened == 1


def test_two_checks_of_one_server_never_talk_to_it_at_the_same_time(tmp_path, kodeks):
    kodeks.scenario.delay = 0.05
    first = kodeks_check(tmp_path, kodeks.url)
    second = kodeks_check(tmp_path / ".." / tmp_path.name, kodeks.url)
    engine, http = PingEngine(), HttpClient()

    async def both():
        return await asyncio.gather(run_once(first, engine, http, {}), run_once(second, engine, http, {}))

    try:
        results = asyncio.run(both())
    finally:
        http.close()
    assert all(r.reason != "timeout" for r in results)
    assert kodeks.scenario.most_in_flight == 1


def test_the_page_parser_ignores_unknown_lines_and_refuses_wrong_values():
    page = textwrap.dedent("""\
        # Sysinfo metrics
        kserver_uptime_seconds 12345
        kserver_main_page{service="kodweb",path="/docs"} 0
        kserver_product_control{service="kodweb",path="/docs"} 1
        something else entirely
    """)
    catalogs = parse_metrics_page(page)
    assert list(catalogs) == ["/docs"]
    assert not catalogs["/docs"].main_page_problem and catalogs["/docs"].product_control_problem
    with pytest.raises(PageFormatError, match="value '2'"):
        parse_metrics_page('kserver_main_page{service="kodweb",path="/docs"} 2\n')
    with pytest.raises(PageFormatError, match="no kserver_main_page"):
        parse_metrics_page("<html>login</html>")


def test_the_title_parser_takes_what_is_there_and_says_what_is_missing(caplog):
    caplog.set_level(logging.DEBUG, logger="exporter.checks.kodeks")
    found = parse_admin_title("<p>Регистрационный номер: 77-1</p><p>Ограничение рег. файла: до 05.03.2027</p>",
                              ZoneInfo("Europe/Moscow"))
    assert found.number == "77-1" and found.valid_through == "05.03.2027"
    assert found.version is None and found.sessions is None
    assert "marker='Версия'" in caplog.text and "marker='Всего соединений (сессии)'" in caplog.text


def test_username_without_password_is_a_config_error(tmp_path):
    config = write_config(tmp_path / "site.yml",
                          "sites:\n  - id: o\n    checks:\n      - name: k\n"
                          "        kodeks: {url: 'http://127.0.0.1:8080', username: smartlogin}\n")
    with pytest.raises(ConfigError, match=r"sites\[0\]\.checks\[0\]\.kodeks: expected username and password"):
        load_config(config)


def test_a_url_with_a_path_is_a_config_error(tmp_path):
    config = write_config(tmp_path / "site.yml", "sites:\n  - id: o\n    checks:\n      - name: k\n"
                                                 "        kodeks: {url: 'http://127.0.0.1:8080/docs'}\n")
    with pytest.raises(ConfigError, match=r"kodeks\.url: expected the server's base URL"):
        load_config(config)


def test_one_shot_check_lists_what_is_wrong_per_catalog(tmp_path, kodeks):
    config = write_config(tmp_path / "site.yml", textwrap.dedent(f"""
        sites:
          - id: office
            checks:
              - name: kodeks
                kodeks: {{url: "{kodeks.url}", username: {USERNAME}, password: {{env: KODEKS_TEST_PASSWORD}}}}
    """))
    result = subprocess.run([sys.executable, "-m", "exporter.cli", "check", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1
    assert "office/kodeks:\n" in result.stdout
    assert "  - catalog /docs2: the main page is not built correctly\n" in result.stdout
    assert "  - catalog /law: the bundle (комплект) control reports a problem" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


def test_the_running_exporter_exports_catalog_metrics_and_keeps_one_session(start_exporter, tmp_path, kodeks):
    config = write_config(tmp_path / "site.yml", textwrap.dedent(f"""
        sites:
          - id: office
            labels: {{client: gorodskaya-duma}}
            checks:
              - name: kodeks
                interval: 300ms
                timeout: 250ms
                kodeks: {{url: "{kodeks.url}", username: {USERNAME}, password: {{env: KODEKS_TEST_PASSWORD}}}}
    """))
    exporter = start_exporter(config, env={"KODEKS_TEST_PASSWORD": PASSWORD})
    wait_until(lambda: len(kodeks.scenario.requests) >= 15, 10, what="three runs")
    text = exporter.metrics()
    assert value_of_metric(text, "sitewatch_kodeks_main_page_ok", catalog="/docs2", client="gorodskaya-duma") == 0
    assert value_of_metric(text, "sitewatch_kodeks_main_page_ok", catalog="/docs") == 1
    assert value_of_metric(text, "sitewatch_kodeks_catalog_status_info", catalog="/law",
                           status="no required volume DB") == 1
    assert value_of_metric(text, "sitewatch_check_failure_info", check="kodeks", reason="main_page") == 1
    assert value_of_metric(text, "sitewatch_kodeks_licence_expiry_timestamp_seconds") is not None
    assert kodeks.scenario.sessions_opened == 1


def test_the_most_telling_problem_gives_the_reason_whatever_the_catalog_order(tmp_path, kodeks):
    kodeks.scenario.catalogs = [Catalog("/docs", product_control_problem=True),
                                Catalog("/docs2", main_page_problem=True)]
    result = run_check(kodeks_check(tmp_path, kodeks.url))
    assert result.reason == "main_page"
    assert result.message.splitlines()[0] == "catalog /docs2: the main page is not built correctly"
    assert result.message.splitlines()[1].startswith("catalog /docs: the bundle")


def test_other_dates_on_the_title_page_are_not_taken_for_the_licence():
    found = parse_admin_title("<p>Сопровождение до 01.02.2025</p><p>Регистрационный номер: 77-1</p>", None)
    assert found.expiry is None and found.number == "77-1"


def test_the_licence_runs_out_at_local_midnight_across_a_clock_change():
    berlin = ZoneInfo("Europe/Berlin")  # clocks go forward on 30 March 2025
    found = parse_admin_title("Ограничение рег. файла: до 29.03.2025", berlin)
    assert found.expiry == datetime(2025, 3, 30, tzinfo=berlin).timestamp()
    found = parse_admin_title("Ограничение рег. файла: до 30.03.2025", berlin)
    assert found.expiry == datetime(2025, 3, 31, tzinfo=berlin).timestamp()


def test_default_service_message_markers_catch_the_usual_wordings():
    import re

    from exporter.checks.kodeks import DEFAULT_SERVICE_MESSAGE_MARKERS, _first_match

    markers = [re.compile(p) for p in DEFAULT_SERVICE_MESSAGE_MARKERS]
    for text in ("Необходимо обратиться к администратору системы.", "Обратитесь к администратору.",
                 "Служебное сообщение: база обновляется.", "Требуется обслуживание сервера."):
        assert _first_match(markers, text), text
    assert _first_match(markers, "Главная страница. Новое в законодательстве.") is None


def test_an_unreadable_title_page_keeps_the_check_passing_and_is_logged_once(tmp_path, kodeks, caplog):
    all_fine(kodeks)
    kodeks.scenario.admin_title = False
    check = kodeks_check(tmp_path, kodeks.url)
    memory: dict = {}
    engine, http = PingEngine(), HttpClient()
    caplog.set_level(logging.WARNING, logger="exporter.checks.kodeks")
    try:
        results = [asyncio.run(run_once(check, engine, http, memory)) for _ in range(3)]
    finally:
        http.close()
    assert all(result.success for result in results)
    assert not any(name == "sitewatch_kodeks_licence_expiry_timestamp_seconds" for name, _ in samples(results[0]))
    lines = [r.getMessage() for r in caplog.records if "kodeks_licence_unreadable" in r.getMessage()]
    assert len(lines) == 1 and "HTTP 403" in lines[0]
