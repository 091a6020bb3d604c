"""smartstatus.bat's own curl lines, run by the real curl against the Кодекс simulator and a real
sitewatch-ingest, reach a real Prometheus as the kodeks check's series with the site's labels; the 2026
form's date: line is the upload's time (unless it is too far off); a maintenance page, an empty file and
a page that is not the monitoring page are judged as the kodeks check judges them."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import time
import urllib.parse
from email.utils import parsedate_to_datetime

import pytest

from conftest import free_port, http_get, run_check, value_of_metric, wait_until, write_config
from exporter.config import load_config
from ingest_data.ingest_kit import (DEALER, OTHER_DEALER, OTHER_TOKEN, TOKEN, ingest_process,  # noqa: F401
                                    monitoring_page)
from simulators.kodeks import PASSWORD, USERNAME, FakeKodeksServer

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")

SITE = {"site": "gorduma-kodeks", "client": "gorodskaya-duma", "distributor": "rogaikopita",
        "telegram_route": "rogaikopita-kodeks", "check": "kodeks", "type": "kodeks"}
SITE_2026 = {"site": "other-kodeks", "client": "other-client", "distributor": "other",
             "telegram_route": "other-kodeks", "check": "kodeks", "type": "kodeks"}


@pytest.fixture
def kodeks():
    server = FakeKodeksServer().start()
    yield server
    server.stop()


def run_script(lines: list[str], folder) -> list[subprocess.CompletedProcess]:
    """The script's lines one after another in its folder, as the scheduled task runs the .bat."""
    return [subprocess.run(line, shell=True, cwd=folder, capture_output=True, text=True, timeout=30)
            for line in lines]


def script_2023(client: str, server: str, ingest: str, dealer: str, token: str) -> list[str]:
    address = server.removeprefix("http://")
    return [
        f'curl -A "smartdownload" -k -v -L -c cookies.txt -b cookies.txt -o {client}.status '
        f'http://{address}/sysinfo/metrics',
        f'curl -H "upload: yes" -H "dealer: {dealer}" -v -Ffile=@{client}.status "{ingest}/upload?token={token}"',
    ]


def script_2026(client: str, server: str, ingest: str, dealer: str, token: str) -> list[str]:
    # Windows' `find "date:"` is `grep -i "date:"` here; `del /q /f` is `rm -f`.
    address = server.removeprefix("http://")
    fetch = f'curl -A "smartdownload" -k -v -L -c cookies.txt -b cookies.txt -u {USERNAME}:{PASSWORD}'
    return [
        f"rm -f {client}.status",
        f'curl -i {fetch.removeprefix("curl ")} http://{address}/sysmon/metrics | grep -i "date:" >> {client}.status',
        f"{fetch} http://{address}/sysmon/metrics >> {client}.status",
        f'curl -H "upload: yes" -H "dealer: {dealer}" -v -Ffile=@{client}.status "{ingest}/upload?token={token}"',
    ]


def prometheus_query(prometheus_url: str, query: str) -> list[dict]:
    status, body = http_get(prometheus_url + "/api/v1/query?query=" + urllib.parse.quote(query))
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def test_both_forms_of_smartstatus_bat_run_by_curl_reach_prometheus_as_kodeks_series_with_the_sites_labels(
        tmp_path, kodeks, ingest_process, prometheus):
    ingest = ingest_process()
    folder_2023, folder_2026 = tmp_path / "smartstatus-2023", tmp_path / "smartstatus-2026"
    folder_2023.mkdir()
    folder_2026.mkdir()

    runs_2023 = run_script(script_2023("GORDUMA", kodeks.url, ingest.url, DEALER, TOKEN), folder_2023)
    runs_2026 = run_script(script_2026("OTHER", kodeks.url, ingest.url, OTHER_DEALER, OTHER_TOKEN), folder_2026)

    # What the technician sees in the console: curl printing the SMART server's own answer.
    assert runs_2023[-1].stdout == '{"ok":true,"path":"/files/GORDUMA.status"}', runs_2023[-1].stderr
    assert runs_2026[-1].stdout == '{"ok":true,"path":"/files/OTHER.status"}', runs_2026[-1].stderr
    assert "< HTTP/1.0 200 OK" in runs_2023[-1].stderr
    assert (folder_2026 / "OTHER.status").read_text().lower().startswith("date: ")

    url = prometheus([f"127.0.0.1:{ingest.port}"])

    def scraped():
        return len(prometheus_query(url, 'sitewatch_kodeks_main_page_ok')) == 6

    wait_until(scraped, 30, interval=0.5, what="Prometheus to scrape both sites' catalogs")
    for labels in (SITE, SITE_2026):
        selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
        found = {r["metric"]["catalog"]: r["value"][1]
                 for r in prometheus_query(url, f"sitewatch_kodeks_main_page_ok{{{selector}}}")}
        assert found == {"/docs": "1", "/docs2": "0", "/law": "1"}  # the simulator: /docs2's main page is broken
        found = {r["metric"]["catalog"]: r["value"][1]
                 for r in prometheus_query(url, f"sitewatch_kodeks_product_control_ok{{{selector}}}")}
        assert found == {"/docs": "1", "/docs2": "1", "/law": "0"}
        statuses = prometheus_query(url, f"sitewatch_kodeks_catalog_status_info{{{selector}}}")
        assert [(r["metric"]["catalog"], r["metric"]["status"]) for r in statuses] == [
            ("/law", "no required volume DB")]
        failure = prometheus_query(url, f"sitewatch_check_failure_info{{{selector}}}")
        assert [r["metric"]["reason"] for r in failure] == ["main_page"]  # the kodeks check's reason
        assert prometheus_query(url, f"sitewatch_check_success{{{selector}}}")[0]["value"][1] == "0"
        # Only the page came: neither the main pages' nor /admin/title's series can be there.
        for absent in ("sitewatch_kodeks_service_message", "sitewatch_kodeks_licence_expiry_timestamp_seconds",
                       "sitewatch_kodeks_info", "sitewatch_kodeks_sessions"):
            assert prometheus_query(url, f"{absent}{{{selector}}}") == [], absent
        freshness = prometheus_query(url, f'sitewatch_ingest_last_upload_timestamp_seconds{{site="{labels["site"]}"}}')
        assert freshness[0]["metric"]["source"] == "smartstatus"
        assert freshness[0]["metric"]["telegram_route"] == labels["telegram_route"]
        assert abs(float(freshness[0]["value"][1]) - time.time()) < 60
        silent = prometheus_query(url, f'sitewatch_ingest_silent_after_seconds{{site="{labels["site"]}"}}')
        assert silent[0]["value"][1] == "2400"
    # The 2026 form's time is the Кодекс server's Date: header, to the second, not the arrival.
    date_line = (folder_2026 / "OTHER.status").read_text().splitlines()[0]
    server_date = parsedate_to_datetime(date_line.split(":", 1)[1].strip()).timestamp()
    assert ingest.value("sitewatch_ingest_last_upload_timestamp_seconds", site="other-kodeks") == server_date
    assert ingest.value("sitewatch_check_last_run_timestamp_seconds", site="other-kodeks") == server_date
    # The samples carry no timestamps of their own: Prometheus would drop them 5 minutes after an upload.
    for line in ingest.metrics().splitlines():
        if line.startswith("sitewatch_"):
            after_labels = line.rsplit("}", 1)[1] if "}" in line else line.split(" ", 1)[1]
            assert len(after_labels.split()) == 1, line


def test_the_uploaded_page_gives_the_kodeks_checks_own_series_for_the_same_server(tmp_path, kodeks, ingest_process):
    """The same server read by the exporter's kodeks check (page only) and uploaded by the script: same series."""
    ingest = ingest_process()
    run_script(script_2023("GORDUMA", kodeks.url, ingest.url, DEALER, TOKEN), tmp_path)
    check = load_config(write_config(tmp_path / "site.yml", textwrap.dedent(f"""
        sites:
          - id: x
            checks:
              - name: kodeks
                kodeks: {{url: "{kodeks.url}", metrics_path: /sysinfo/metrics, main_pages: false, licence: false}}
    """))).checks()[0]
    result = run_check(check)
    text = ingest.metrics()
    for sample in result.samples:
        labels = {**SITE, **dict(sample.labels)}
        assert value_of_metric(text, sample.name, **labels) == sample.value, (sample.name, labels)
    assert value_of_metric(text, "sitewatch_check_failure_info", reason=result.reason, **SITE) == 1
    assert result.reason == "main_page" and len(result.samples) == 8


def upload_time_of(ingest, site: str) -> float | None:
    return ingest.value("sitewatch_ingest_last_upload_timestamp_seconds", site=site)


def with_date(page: bytes, when: float, name: str = "date") -> bytes:
    line = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))
    return f"{name}: {line}\r\n".encode() + page


def test_a_date_line_minutes_old_is_the_upload_time_and_one_an_hour_off_or_ahead_is_not_believed(ingest_process):
    ingest = ingest_process()
    minutes_ago = int(time.time()) - 300
    response = ingest.upload("GORDUMA.status", with_date(monitoring_page("Sysmon metrics"), minutes_ago, "Date"))
    assert response.json() == {"ok": True, "path": "/files/GORDUMA.status"}
    assert upload_time_of(ingest, "gorduma-kodeks") == minutes_ago
    assert ingest.value("sitewatch_ingest_dates_ignored_total", source="smartstatus") == 0

    # A server clock an hour slow would make the site look silent at once; one an hour fast would hide a
    # silence for that hour: arrival is taken in both cases.
    for ignored, offset in enumerate((-3600, 3600), start=1):
        before = time.time()
        response = ingest.upload("GORDUMA.status", with_date(monitoring_page("Sysmon metrics"), before + offset))
        assert response.status_code == 200
        assert before <= upload_time_of(ingest, "gorduma-kodeks") <= time.time()  # arrival, not the server's clock
        assert ingest.value("sitewatch_ingest_dates_ignored_total", source="smartstatus") == ignored
    page = http_get(ingest.url + "/")[1]
    assert "its date: line was not believed" in page


def test_a_maintenance_page_sets_maintenance_and_an_empty_file_says_the_server_gave_nothing(ingest_process, kodeks,
                                                                                             tmp_path):
    ingest = ingest_process()
    kodeks.scenario.maintenance = True  # the 503 page with the maintenance banner, which curl -o saves all the same
    runs = run_script(script_2023("GORDUMA", kodeks.url, ingest.url, DEALER, TOKEN), tmp_path)
    assert runs[-1].stdout == '{"ok":true,"path":"/files/GORDUMA.status"}'
    assert ingest.value("sitewatch_kodeks_maintenance", **SITE) == 1
    assert ingest.value("sitewatch_check_failure_info", reason="maintenance", **SITE) == 1
    assert ingest.value("sitewatch_kodeks_main_page_ok", **SITE) is None

    # The 2026 form when the server is off: the date line is missing too, and the file is empty.
    nothing_there = f"http://127.0.0.1:{free_port()}"
    runs = run_script(script_2026("GORDUMA", nothing_there, ingest.url, DEALER, TOKEN), tmp_path)
    assert (tmp_path / "GORDUMA.status").read_bytes() == b""
    assert runs[-1].stdout == '{"ok":true,"path":"/files/GORDUMA.status"}'
    assert ingest.value("sitewatch_check_failure_info", reason="connect", **SITE) == 1
    assert ingest.value("sitewatch_kodeks_maintenance", **SITE) is None
    assert ingest.value("sitewatch_check_up", **SITE) == 0  # two failed uploads in a row (failure_threshold 2)


def test_a_page_that_is_not_the_monitoring_page_is_refused_and_kept_as_a_parse_failure(ingest_process, kodeks,
                                                                                        tmp_path):
    ingest = ingest_process()
    kodeks.scenario.garbage = True  # "Welcome to nginx!" where the monitoring page should be
    runs = run_script(script_2023("GORDUMA", kodeks.url, ingest.url, DEALER, TOKEN), tmp_path)
    answer = json.loads(runs[-1].stdout)
    assert answer["ok"] is False and answer["reason"] == "not_monitoring_page"
    assert "Welcome to nginx" in answer["error"]
    assert "< HTTP/1.0 422" in runs[-1].stderr
    assert ingest.value("sitewatch_ingest_refused_total", source="smartstatus", reason="not_monitoring_page") == 1
    # The site did report, and what it reported is the wrong page: the check fails as the kodeks check would.
    assert ingest.value("sitewatch_check_failure_info", reason="parse", **SITE) == 1
    assert upload_time_of(ingest, "gorduma-kodeks") is not None
