"""A fleet's ways that one site's tests do not show: clients made sites up to a distributor's limit, where a
site already made keeps uploading, and a quarter hour at which hundreds of scheduled tasks connect at once."""

from __future__ import annotations

import concurrent.futures
import socket
import time

from ingest_data.ingest_kit import DEALER, ingest_process, monitoring_page, write_ingest_config  # noqa: F401

DERIVING = """
storage: {path: ingest.db}
distributors:
  rogaikopita599:
    token: {env: INGEST_TEST_TOKEN}
    labels: {distributor: rogaikopita}
    derive_sites: true
    max_derived_sites: 2
"""


def test_a_made_site_keeps_uploading_once_its_distributor_reached_the_limit(tmp_path, ingest_process):
    ingest = ingest_process(write_ingest_config(tmp_path, DERIVING))
    page = monitoring_page()
    assert ingest.upload("ALPHA.status", page).status_code == 200
    assert ingest.upload("BETA.status", page).status_code == 200
    third = ingest.upload("GAMMA.status", page)
    assert third.status_code == 422 and "max_derived_sites" in third.text
    assert ingest.upload("ALPHA.status", page).status_code == 200  # made before the limit: still its site
    assert ingest.value("sitewatch_ingest_refused_total", source="smartstatus", reason="too_many_sites") == 1
    assert ingest.value("sitewatch_ingest_uploads_total", source="smartstatus") == 3


def test_three_hundred_tasks_connecting_at_the_same_moment_are_all_answered(tmp_path, ingest_process):
    """socketserver's backlog of 5 once dropped most of such a burst: each retried a second later, or gave up."""
    ingest = ingest_process()
    page = monitoring_page()
    sockets = []
    started = time.monotonic()
    try:
        for _ in range(300):  # connected, nothing sent yet: every one waits in the listen queue or a thread
            sockets.append(socket.create_connection(("127.0.0.1", ingest.port), timeout=10))
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda _: ingest.upload("GORDUMA.status", page).status_code, range(64)))
        took = time.monotonic() - started
    finally:
        for sock in sockets:
            sock.close()
    assert answers == [200] * 64
    assert took < 10, f"300 connections and 64 uploads beside them took {took:.1f} s"


TWO_DERIVING = DERIVING.replace("max_derived_sites: 2", "max_derived_sites: 5") + """
  0420otherdist:
    token: {env: INGEST_TEST_OTHER_TOKEN}
    labels: {distributor: other}
    derive_sites: true
"""


def test_a_made_site_is_not_taken_over_by_another_name_or_distributor_that_spells_its_id(tmp_path, ingest_process):
    from ingest_data.ingest_kit import OTHER_TOKEN

    ingest = ingest_process(write_ingest_config(tmp_path, TWO_DERIVING))
    page = monitoring_page()
    assert ingest.upload("Ромашка Офис.status", page).status_code == 200  # site romashka-ofis
    same_id_other_name = ingest.upload("romashka-ofis.status", page)
    assert same_id_other_name.status_code == 422 and "map it explicitly" in same_id_other_name.text
    other_distributor = ingest.upload("Ромашка Офис.status", b"", dealer="0420otherdist", token=OTHER_TOKEN)
    assert other_distributor.status_code == 422
    assert ingest.value("sitewatch_check_up", site="romashka-ofis", distributor="rogaikopita") == 1
    assert ingest.value("sitewatch_check_runs_total", site="romashka-ofis") == 1  # neither ran as its check
