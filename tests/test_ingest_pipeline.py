"""The whole way for sites no agent of ours runs on: smartstatus.bat's upload and getad-service's post reach
sitewatch-ingest, a real Prometheus scrapes it and evaluates the project's rules (time-compressed),
Alertmanager routes by the labels the ingest config gives, and the receiver tells the right chats.

The Кодекс site belongs to distributor kodeks-spb, the café to pos-service: each distributor's chat gets its
own site's alert and nothing of the other's."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime, timedelta

import pytest
import yaml

from conftest import Daemons, free_port, write_config
from ingest_data.ingest_kit import GETAD_KEY, TOKEN, data_file, ingest_process, write_ingest_config  # noqa: F401
from receiver_kit import write_receiver_config
from simulators.kodeks import Catalog, FakeKodeksServer, Scenario
from test_pipeline import (CHATS, KKT_THREAD, TITLE, compressed_alertmanager_config, compressed_rules,
                           firing, receiver_routes, texts)

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")

CONFIG = """
storage: {path: ingest.db}
distributors:
  spb0001kodeks:
    token: {env: INGEST_TEST_TOKEN}
    labels: {distributor: kodeks-spb}
    timezone: Europe/Moscow
  pos0002service:
    token: {env: INGEST_TEST_OTHER_TOKEN}
    getad_api_key: {env: INGEST_TEST_GETAD_KEY}
    labels: {distributor: pos-service}
    timezone: Europe/Moscow
sites:
  - id: lib-ingest
    distributor: spb0001kodeks
    labels: {client: gorbiblio}
    smartstatus: {client: GORBIBLIO}
  - id: cafe-ingest
    distributor: pos0002service
    labels: {client: isaac}
    getad: {serials: ["00123456790012"]}
"""


def start_prometheus(tmp_path, daemons: Daemons, ingest_port: int, alertmanager_url: str) -> str:
    rules = tmp_path / "rules"
    rules.mkdir()
    config = write_config(tmp_path / "prometheus-ingest.yml", yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in compressed_rules(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager_url.removeprefix("http://")]}]}]},
        # as prometheus/prometheus.yml scrapes it
        "scrape_configs": [{"job_name": "sitewatch-ingest", "honor_labels": True,
                            "static_configs": [{"targets": [f"127.0.0.1:{ingest_port}"]}]}],
    }, sort_keys=False))
    port = free_port()
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    return daemons.start("Prometheus", [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                        f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s"],
                         tmp_path / "prometheus-ingest.log", port)


def test_an_uploaded_kodeks_page_and_a_posted_register_alert_in_their_distributors_chats(
        tmp_path, ingest_process, alertmanager, receiver_process, fake_telegram):
    telegram = fake_telegram()
    for route, chat in CHATS.items():
        telegram.add_chat(chat, type="supergroup", is_forum=True) if route == "kkt" else \
            telegram.add_chat(chat, type="group")
    receiver_folder = tmp_path / "receiver"
    receiver_folder.mkdir()
    receiver = receiver_process(write_receiver_config(receiver_folder, telegram.url, routes=receiver_routes()))
    alertmanager_url = alertmanager(compressed_alertmanager_config(receiver.url, receiver_folder / "webhook.token"))
    ingest = ingest_process(write_ingest_config(tmp_path, CONFIG))
    kodeks = FakeKodeksServer(Scenario(catalogs=[Catalog("/docs"), Catalog("/docs2", main_page_problem=True)])).start()
    daemons = Daemons()
    try:
        start_prometheus(tmp_path, daemons, ingest.port, alertmanager_url)
        # smartstatus.bat, 2023 form: fetch the page, upload it
        folder = tmp_path / "smartstatus"
        folder.mkdir()
        for line in (f'curl -A "smartdownload" -k -s -L -c cookies.txt -b cookies.txt -o GORBIBLIO.status '
                     f'{kodeks.url}/sysinfo/metrics',
                     f'curl -s -H "upload: yes" -H "dealer: spb0001kodeks" -Ffile=@GORBIBLIO.status '
                     f'"{ingest.url}/upload?token={TOKEN}"'):
            run = subprocess.run(line, shell=True, cwd=folder, capture_output=True, text=True, timeout=30)
            assert run.returncode == 0, run.stderr
        assert run.stdout == '{"ok":true,"path":"/files/GORBIBLIO.status"}'
        # getad-service's post of a register whose ФН ends in ten days (its local date, as getad writes it)
        register = yaml.safe_load(data_file("00123456790012.json"))  # JSON is YAML
        register["dateTime_end"] = (datetime.now() + timedelta(days=10)).strftime("%Y-%m-%d 00:00:00")
        assert ingest.post_getad(register, key=GETAD_KEY).status_code == 200

        def arrived() -> bool:
            spb = texts(m for m in telegram.messages(CHATS["kodeks-spb"]) if firing(m))
            pos = texts(m for m in telegram.messages(CHATS["pos"]) if firing(m))
            kkt = texts(m for m in telegram.messages(CHATS["kkt"]) if firing(m))
            duty = texts(m for m in telegram.messages(CHATS["duty"]) if firing(m))
            return (TITLE["KodeksMainPageError"] in spb and TITLE["FnExpiring"] in pos
                    and TITLE["FnExpiring"] in kkt and TITLE["KodeksMainPageError"] in duty)

        deadline = time.monotonic() + 90
        while not arrived():
            assert time.monotonic() < deadline, (
                "KodeksMainPageError in kodeks-spb and duty, FnExpiring in pos and kkt did not arrive: "
                f"{ {route: [m.text[:120] for m in telegram.messages(chat)] for route, chat in CHATS.items()} }")
            time.sleep(0.5)

        spb = [m for m in telegram.messages(CHATS["kodeks-spb"]) if firing(m)]
        pos = [m for m in telegram.messages(CHATS["pos"]) if firing(m)]
        page = next(m for m in spb if TITLE["KodeksMainPageError"] in m.text)
        assert "площадка lib-ingest" in page.text and "клиент gorbiblio" in page.text and "/docs2" in page.text
        fn = next(m for m in pos if TITLE["FnExpiring"] in m.text)
        assert "площадка cafe-ingest" in fn.text and "7380440700067159" in fn.text
        # each distributor's chat holds its own site only
        assert "cafe-ingest" not in texts(telegram.messages(CHATS["kodeks-spb"]))
        assert "lib-ingest" not in texts(telegram.messages(CHATS["pos"]))
        # and the catch-all chats as for any site: the ФН in the kkt topic, the page in the duty chat
        assert any(TITLE["FnExpiring"] in m.text and m.message_thread_id == KKT_THREAD
                   for m in telegram.messages(CHATS["kkt"]))
        assert any(TITLE["KodeksMainPageError"] in m.text for m in telegram.messages(CHATS["duty"]))
        # nothing says the sites are silent: they have just uploaded
        assert not any(TITLE["SiteNotReporting"] in m.text for chat in CHATS.values()
                       for m in telegram.messages(chat))
    finally:
        daemons.stop_all()
        kodeks.stop()
