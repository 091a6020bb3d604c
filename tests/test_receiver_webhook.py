"""The webhook endpoint: what Alertmanager is answered, and what reaches the outbox.

The app is the real one (`create_app`), driven through Flask's test client with its sender stopped, so
the outbox can be read exactly as the webhook left it.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from alertmanager.outbox import Outbox
from conftest import value_of_metric
from receiver_kit import BOT_TOKEN, GROUP_CHAT, OTHER_CHAT, WEBHOOK_TOKEN, alert, payload, write_receiver_config

AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


@pytest.fixture
def app(tmp_path, receiver_app):
    config = write_receiver_config(tmp_path, "http://127.0.0.1:9")
    return receiver_app(config, start_sender=False)


def waiting(app) -> list[tuple[str, str, str]]:
    from alertmanager.app import receiver_of
    outbox: Outbox = receiver_of(app).outbox
    rows = outbox._connection().execute("SELECT queue, status, fingerprint FROM items ORDER BY id").fetchall()
    return [tuple(row) for row in rows]


def metric(app, name: str, **labels: str) -> float | None:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return value_of_metric(text, name, **labels)


def test_a_webhook_is_answered_200_only_with_its_alerts_in_the_outbox(app):
    body = payload([alert(site="shop-1"), alert(site="shop-2")])
    answer = app.test_client().post("/alert/duty", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["queued"] == 2
    assert [row[1] for row in waiting(app)] == ["firing", "firing"]
    assert all(row[0].startswith(f"main|{GROUP_CHAT}|") for row in waiting(app))
    assert metric(app, "sitewatch_receiver_webhooks_total", result="accepted") == 1
    assert metric(app, "sitewatch_receiver_outbox_messages") == 2


@pytest.mark.parametrize("body, reason, words", [
    (b"{not json", "bad_json", "not JSON"),
    (json.dumps({**payload([alert()]), "version": "3"}).encode(), "wrong_version", 'expected "4"'),
    (json.dumps(payload([{**alert(), "labels": None}])).encode(), "bad_payload", "alerts[0].labels"),
    (json.dumps({k: v for k, v in payload([alert()]).items() if k != "groupKey"}).encode(), "bad_payload",
     "groupKey: missing"),
    (json.dumps(payload([{**alert(), "status": "burning"}])).encode(), "bad_payload", "alerts[0].status"),
    (b"[1, 2]", "bad_payload", "JSON object"),
])
def test_a_bad_payload_gets_a_4xx_naming_the_problem_and_is_counted(app, body, reason, words):
    answer = app.test_client().post("/alert/duty", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 400
    error = answer.get_json()
    assert error["error"] == reason and words in error["message"]
    assert metric(app, "sitewatch_receiver_webhooks_total", result=reason) == 1
    assert waiting(app) == []


def test_an_unknown_route_is_a_404_listing_the_known_ones(app):
    answer = app.test_client().post("/alert/nosuch", json=payload([alert()]), headers=AUTH)
    assert answer.status_code == 404
    assert answer.get_json()["routes"] == ["duty", "other"]
    assert metric(app, "sitewatch_receiver_webhooks_total", result="unknown_route") == 1


def test_a_body_over_the_limit_is_a_413_not_a_500(tmp_path, receiver_app):
    config = write_receiver_config(tmp_path, "http://127.0.0.1:9", extra="webhook:\n  max_body: 2KiB\n")
    app = receiver_app(config, start_sender=False)
    body = payload([alert(site=f"shop-{n}") for n in range(30)])
    answer = app.test_client().post("/alert/duty", json=body, headers=AUTH)
    assert answer.status_code == 413
    assert "2048" in answer.get_json()["message"]
    assert metric(app, "sitewatch_receiver_webhooks_total", result="too_large") == 1


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {base64.b64encode(b'am:' + WEBHOOK_TOKEN.encode()).decode()}",
                                    "Bearer"])
def test_without_the_right_credentials_a_webhook_is_refused_with_401(app, header):
    headers = {"Authorization": header} if header else {}
    answer = app.test_client().post("/alert/duty", json=payload([alert()]), headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert waiting(app) == []


def test_basic_auth_works_as_alertmanagers_http_config_sends_it(tmp_path, receiver_app):
    (tmp_path / "am.password").write_text("s3cret-pass\n")
    config = write_receiver_config(tmp_path, "http://127.0.0.1:9")
    text = config.read_text().replace("  bearer_token: {file: webhook.token}",
                                      "  basic_auth:\n    username: alertmanager\n    password: {file: am.password}")
    config.write_text(text)
    app = receiver_app(config, start_sender=False)
    good = base64.b64encode(b"alertmanager:s3cret-pass").decode()
    bad = base64.b64encode(b"alertmanager:guess").decode()
    client = app.test_client()
    assert client.post("/alert/duty", json=payload([alert()]), headers={"Authorization": f"Basic {bad}"}).status_code == 401
    assert client.post("/alert/duty", json=payload([alert()]), headers={"Authorization": f"Basic {good}"}).status_code == 200


def test_the_same_notification_from_two_alertmanagers_is_stored_once(app):
    body = payload([alert(site="shop-1"), alert(site="shop-2", status="resolved")])
    client = app.test_client()
    first = client.post("/alert/duty", json=body, headers=AUTH)
    second = client.post("/alert/duty", json=body, headers=AUTH)
    assert first.get_json()["status"] == "queued"
    assert second.status_code == 200 and second.get_json()["status"] == "duplicate"
    assert len(waiting(app)) == 2
    assert metric(app, "sitewatch_receiver_webhooks_total", result="duplicate") == 1
    # The group changes (one more alert): that is news, not a copy.
    body["alerts"].append(alert(site="shop-3"))
    assert client.post("/alert/duty", json=body, headers=AUTH).get_json()["status"] == "queued"


def test_an_alert_that_fires_again_within_the_window_is_news_not_a_copy(app):
    client = app.test_client()
    first = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)
    again = first + timedelta(minutes=4)  # resolved at 09:03, fired again at 09:04, within the 10-minute window
    assert client.post("/alert/duty", json=payload([alert(starts_at=first)]), headers=AUTH).get_json()["status"] == "queued"
    assert client.post("/alert/duty", json=payload([alert(starts_at=again)]), headers=AUTH).get_json()["status"] == "queued"
    # Its HA peer's copy of the same firing is still a copy.
    assert client.post("/alert/duty", json=payload([alert(starts_at=again)]), headers=AUTH).get_json()["status"] \
        == "duplicate"


def test_a_resolved_alert_cancels_its_waiting_firing_message(app):
    client = app.test_client()
    client.post("/alert/duty", json=payload([alert(site="shop-1"), alert(site="shop-2")]), headers=AUTH)
    answer = client.post("/alert/duty", json=payload([alert(site="shop-1", status="resolved")]), headers=AUTH)
    assert answer.get_json()["cancelled"] == 1
    assert [(row[1], row[2]) for row in waiting(app)] == [("firing", "fp-SiteDown-shop-2-")]
    assert metric(app, "sitewatch_receiver_alerts_cancelled_total", route="duty") == 1


def test_the_telegram_route_label_picks_the_chat_and_an_unknown_one_falls_back(app, caplog):
    client = app.test_client()
    body = payload([alert(site="shop-1", telegram_route="other"), alert(site="shop-2", telegram_route="nosuch"),
                    alert(site="shop-3")])
    with caplog.at_level(logging.WARNING, logger="sitewatch.receiver"):
        assert client.post("/alert/duty", json=body, headers=AUTH).status_code == 200
    chats = {row[2]: row[0].split("|")[1] for row in waiting(app)}
    assert chats == {"fp-SiteDown-shop-1-telegram_route=other": str(OTHER_CHAT),
                     "fp-SiteDown-shop-2-telegram_route=nosuch": str(GROUP_CHAT),
                     "fp-SiteDown-shop-3-": str(GROUP_CHAT)}
    assert metric(app, "sitewatch_receiver_route_fallbacks_total") == 1
    assert "telegram_route='nosuch'" in caplog.text


def test_a_route_without_send_resolved_stores_no_resolved_alerts(tmp_path, receiver_app):
    config = write_receiver_config(tmp_path, "http://127.0.0.1:9", routes=f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    send_resolved: false
""")
    app = receiver_app(config, start_sender=False)
    body = payload([alert(site="shop-1", status="resolved"), alert(site="shop-2")])
    assert app.test_client().post("/alert/duty", json=body, headers=AUTH).get_json()["queued"] == 1


def test_health_readiness_and_metrics_are_served(app):
    client = app.test_client()
    assert client.get("/-/healthy").status_code == 200
    assert client.get("/-/ready").status_code == 200
    page = client.get("/metrics").get_data(as_text=True)
    for name in ("sitewatch_receiver_messages_sent_total", "sitewatch_receiver_messages_failed_total",
                 "sitewatch_receiver_outbox_messages", "sitewatch_receiver_outbox_oldest_age_seconds"):
        assert name in page
    assert BOT_TOKEN not in page and WEBHOOK_TOKEN not in page
