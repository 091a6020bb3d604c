"""getad-service's posts (its README's register file, Mitsu and Shtrih files, the station file) reach the
site that claims them, by hostname, RMS address, serial number or the site's own key, as the getad
check's own series; an unclaimed one is refused naming why; a register not posted for forget_after goes."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap

import pytest

from conftest import run_check, value_of_metric, write_config
from exporter.config import load_config
from ingest_data.ingest_kit import (DATA, GETAD_KEY, SITE_KEY, ingest_process,  # noqa: F401
                                    data_file, series_value, write_ingest_config)

ISAAC = {"site": "isaac-cafe", "client": "isaac", "distributor": "rogaikopita", "telegram_route": "rogaikopita",
         "check": "getad", "type": "getad"}


def labels_of(site: str, client: str) -> dict[str, str]:
    return {**ISAAC, "site": site, "client": client}


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")
def test_the_readme_register_posted_as_getad_service_posts_it_is_matched_by_hostname(ingest_process):
    ingest = ingest_process()
    # getad-service's request: the raw file, Content-Type: application/json and X-API-Key (here with curl).
    run = subprocess.run(["curl", "-s", "-w", " %{http_code}", "-H", "Content-Type: application/json",
                          "-H", f"X-API-Key: {GETAD_KEY}", "--data-binary", f"@{DATA / '00123456790012.json'}",
                          f"{ingest.url}/api/submit_json"], capture_output=True, text=True, timeout=10)
    body, status = run.stdout.rsplit(" ", 1)
    assert status == "200" and json.loads(body)["status"] == "success"
    assert "isaac-cafe" in json.loads(body)["message"]  # hostname "Isaac-LT", claimed as isaac-lt
    text = ingest.metrics()
    kkt = {**ISAAC, "kkt": "00123456790012"}
    assert value_of_metric(text, "sitewatch_kkt_up", **kkt) == 1
    assert value_of_metric(text, "sitewatch_kkt_info", vendor="atol", model="АТОЛ 22 v2 Ф", inn="1111222233",
                           fn="7380440700067159", ffd="1.05", **kkt) == 1
    # The site's zone (Europe/Moscow, from the distributor): 2099-12-31 00:00 there.
    assert value_of_metric(text, "sitewatch_fn_expiry_timestamp_seconds", fn="7380440700067159", **kkt) == 4102347600
    assert value_of_metric(text, "sitewatch_kkt_data_timestamp_seconds", **kkt) == 1714935445
    assert series_value(text, "sitewatch_kkt_licence_expiry_timestamp_seconds",
                        {"licence": "10", "name": "ФФД 1.2", **kkt}) == 2**31 - 1 - 3 * 3600
    assert value_of_metric(text, "sitewatch_check_success", **ISAAC) == 1
    assert value_of_metric(text, "sitewatch_ingest_uploads_total", source="getad") == 1
    assert value_of_metric(text, "sitewatch_ingest_silent_after_seconds", source="getad", site="isaac-cafe") == 57600
    assert value_of_metric(text, "sitewatch_ingest_last_upload_timestamp_seconds", source="getad",
                           site="isaac-cafe") is not None


def test_posts_are_matched_by_serial_by_rms_address_and_by_the_sites_own_key(ingest_process):
    ingest = ingest_process()
    mitsu, shtrih, station = (json.loads(data_file(name)) for name in
                              ("065001234567890.json", "0000000000123456.json", "TV987654321_AD123456789.json"))
    # All three come from KASSA-2 of https://cafe.iiko.it:443/resto. The Mitsu's serial is claimed by mitsu-cafe,
    # which wins over the RMS address rms-cafe claims (written there as https://cafe.iiko.it/resto/).
    assert ingest.post_getad(mitsu).status_code == 200
    assert ingest.post_getad(shtrih).status_code == 200
    # The same Shtrih file with the site's own key goes to that site, whatever it says.
    assert ingest.post_getad(shtrih, key=SITE_KEY).status_code == 200
    text = ingest.metrics()
    assert value_of_metric(text, "sitewatch_kkt_up", kkt="065001234567890",
                           **labels_of("mitsu-cafe", "mitsu-owner")) == 1
    assert value_of_metric(text, "sitewatch_kkt_up", kkt="0000000000123456", **labels_of("rms-cafe", "cafe-chain")) == 1
    assert value_of_metric(text, "sitewatch_kkt_up", kkt="0000000000123456",
                           **labels_of("own-key-cafe", "own-key")) == 1
    assert value_of_metric(text, "sitewatch_kkt_up", kkt="065001234567890", site="rms-cafe") is None
    # Mitsu files carry "None" for licences: no licence series; the ФН date-only is read in the site's zone.
    assert value_of_metric(text, "sitewatch_kkt_licence_expiry_timestamp_seconds", kkt="065001234567890") is None
    assert value_of_metric(text, "sitewatch_kkt_info", kkt="065001234567890", vendor="mitsu") == 1

    # A station file alone (no register answered getad-service) fails the check as the getad check does.
    assert ingest.post_getad(station, key=SITE_KEY).status_code == 200
    assert value_of_metric(ingest.metrics(), "sitewatch_check_success", **labels_of("own-key-cafe", "own-key")) == 1
    response = ingest.post_getad(station)  # via the distributor's key: KASSA-2's RMS address is rms-cafe's
    assert response.status_code == 200 and "rms-cafe" in response.json()["message"]


def test_a_site_whose_getad_posts_only_its_station_file_fails_with_not_found(tmp_path, ingest_process):
    ingest = ingest_process()
    station = json.loads(data_file("TV987654321_AD123456789.json"))
    assert ingest.post_getad(station, key=SITE_KEY).status_code == 200
    labels = labels_of("own-key-cafe", "own-key")
    text = ingest.metrics()
    assert value_of_metric(text, "sitewatch_check_success", **labels) == 0
    assert value_of_metric(text, "sitewatch_check_failure_info", reason="not_found", **labels) == 1
    assert not any(line.startswith("sitewatch_kkt_up{") and 'site="own-key-cafe"' in line
                   for line in text.splitlines())


def test_an_unclaimed_register_is_refused_naming_what_it_was_matched_by(ingest_process):
    ingest = ingest_process()
    record = json.loads(data_file("00123456790012.json"))
    record.update(serialNumber="99999999999999", hostname="NOBODY-PC", url_rms="https://nobody.iiko.it/resto")
    response = ingest.post_getad(record)
    assert response.status_code == 422
    assert response.json()["reason"] == "unmapped"
    assert "'99999999999999'" in response.json()["message"] and "'NOBODY-PC'" in response.json()["message"]
    assert ingest.value("sitewatch_ingest_refused_total", source="getad", reason="unmapped") == 1
    assert ingest.value("sitewatch_kkt_up", kkt="99999999999999") is None


def test_the_ingested_register_series_are_the_getad_checks_own_for_the_same_files(tmp_path, ingest_process):
    ingest = ingest_process()
    folder = tmp_path / "date"
    folder.mkdir()
    for name in ("065001234567890.json", "0000000000123456.json"):
        (folder / name).write_bytes(data_file(name))
        assert ingest.post_getad(data_file(name), key=SITE_KEY).status_code == 200
    check = load_config(write_config(tmp_path / "site.yml", textwrap.dedent(f"""
        sites:
          - id: x
            timezone: Europe/Moscow
            checks:
              - {{name: getad, getad: {{folder: "{folder}"}}}}
    """))).checks()[0]
    result = run_check(check)
    assert result.success
    text = ingest.metrics()
    labels = labels_of("own-key-cafe", "own-key")
    for sample in result.samples:
        assert series_value(text, sample.name, {**labels, **dict(sample.labels)}) == sample.value, sample
    exposed = sum(1 for line in text.splitlines()
                  if line.startswith(("sitewatch_kkt_", "sitewatch_fn_")) and 'site="own-key-cafe"' in line)
    assert exposed == len(result.samples)


def test_a_register_not_posted_for_forget_after_is_dropped_when_the_site_posts_again(tmp_path, ingest_process):
    config = write_ingest_config(tmp_path, textwrap.dedent("""
        storage: {path: ingest.db}
        getad: {forget_after: 1h}
        distributors:
          d1: {getad_api_key: {env: INGEST_TEST_GETAD_KEY}}
        sites:
          - {id: cafe, distributor: d1, getad: {hostnames: [KASSA-2]}}
    """))
    ingest = ingest_process(config)
    assert ingest.post_getad(json.loads(data_file("065001234567890.json"))).status_code == 200
    ingest.stop()
    # An hour and a bit later (the stored post is made older instead of waiting), only the Shtrih is posted.
    import sqlite3

    with sqlite3.connect(tmp_path / "ingest.db") as db:
        db.execute("UPDATE uploads SET arrived_at = arrived_at - 3700, upload_time = upload_time - 3700")
    ingest.start()
    assert ingest.value("sitewatch_kkt_up", kkt="065001234567890") == 1  # kept until the site posts again
    assert ingest.post_getad(json.loads(data_file("0000000000123456.json"))).status_code == 200
    text = ingest.metrics()
    assert value_of_metric(text, "sitewatch_kkt_up", kkt="065001234567890") is None
    assert value_of_metric(text, "sitewatch_kkt_up", kkt="0000000000123456") == 1
    assert "event=item_forgotten site=cafe source=getad item=kkt:065001234567890" in ingest.log_text()


def test_files_posted_as_written_on_disk_with_a_bom_reach_prometheus_with_fn_expiry_and_licences(
        tmp_path, ingest_process, prometheus):
    """getad-service posts each file's bytes as it wrote them: UTF-8, Russian text as it is (the Mitsu's
    replies arrive in cp1251 and are written decoded), 4-space indent; a file saved by a Windows editor may
    carry a BOM. Prometheus scraping the ingest then holds the ФН's expiry and the register's licences."""
    import urllib.parse

    from conftest import http_get, wait_until

    ingest = ingest_process()
    atol = data_file("00123456790012.json")
    mitsu = json.loads(data_file("065001234567890.json"))
    mitsu["organizationName"] = "ИП Сидоров «Кафе №1»"
    on_disk = b"\xef\xbb\xbf" + json.dumps(mitsu, ensure_ascii=False, indent=4).encode("utf-8")
    assert "ИП Сидоров".encode("cp1251") not in on_disk  # the Russian text is UTF-8 in the file
    for body in (atol, on_disk):
        answer = subprocess.run(["curl", "-s", "-w", " %{http_code}", "-H", "Content-Type: application/json",
                                 "-H", f"X-API-Key: {GETAD_KEY}", "--data-binary", "@-",
                                 f"{ingest.url}/api/submit_json"], input=body, capture_output=True, timeout=10)
        assert answer.stdout.decode().endswith(" 200"), answer.stdout
    url = prometheus([f"127.0.0.1:{ingest.port}"], honor_labels=True)

    def query(expr: str) -> list[dict]:
        status, body = http_get(url + "/api/v1/query?query=" + urllib.parse.quote(expr))
        assert status == 200, body
        return json.loads(body)["data"]["result"]

    wait_until(lambda: len(query("sitewatch_fn_expiry_timestamp_seconds")) == 2, 30,
               what="both registers' ФН expiry in Prometheus")
    expiry = {r["metric"]["kkt"]: (r["metric"], float(r["value"][1]))
              for r in query("sitewatch_fn_expiry_timestamp_seconds")}
    labels, mitsu_expiry = expiry["065001234567890"]
    assert labels["fn"] == "9999078902014447" and labels["check"] == "getad" and labels["job"] == "sitewatch"
    assert labels["client"] and labels["telegram_route"] == "rogaikopita"
    assert mitsu_expiry == 1721163600  # 2024-07-17 00:00 in Moscow: the date getad writes for a Mitsu
    licences = query('sitewatch_kkt_licence_expiry_timestamp_seconds{kkt="00123456790012"}')
    assert {r["metric"]["name"] for r in licences} == {"Фискальные функции", "ФФД 1.2"}
