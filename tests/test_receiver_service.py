"""`sitewatch-receiver` as a service: the real Alertmanager posting to it, a SIGKILL mid-delivery,
`check-config` against Telegram, and a dry run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone

import requests

from conftest import ROOT, value_of_metric
from receiver_kit import (sites_in, BOT_TOKEN, GROUP_CHAT, OTHER_CHAT, WEBHOOK_TOKEN, alert, payload, post, wait_for,
                          write_receiver_config)



def test_the_real_alertmanager_delivers_through_the_receiver_to_the_right_chats(tmp_path, fake_telegram,
                                                                                 receiver_process, alertmanager):
    fake = fake_telegram()
    receiver = receiver_process(write_receiver_config(tmp_path, fake.url))
    am_url = alertmanager(f"""
route:
  receiver: telegram
  group_by: [alertname, site]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: telegram
    webhook_configs:
      - url: {receiver.url}/alert/duty
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {tmp_path / 'webhook.token'}
""")
    now = datetime.now(timezone.utc)
    alerts = [
        {"labels": {"alertname": "SiteDown", "site": "shop-1", "severity": "critical", "client": "Ромашка <ООО>"},
         "annotations": {"summary": "Площадка shop-1 недоступна"}, "startsAt": now.isoformat()},
        {"labels": {"alertname": "SiteDown", "site": "shop-2", "severity": "critical", "telegram_route": "other"},
         "annotations": {"summary": "Площадка shop-2 недоступна"}, "startsAt": now.isoformat()},
    ]
    assert requests.post(f"{am_url}/api/v2/alerts", json=alerts, timeout=5).status_code == 200
    [duty] = fake.wait_for_messages(1, chat_id=GROUP_CHAT, timeout=20)
    [other] = fake.wait_for_messages(1, chat_id=OTHER_CHAT, timeout=20)
    assert "shop-1" in duty.text and "Ромашка &lt;ООО&gt;" in duty.text and "shop-2" not in duty.text
    assert "shop-2" in other.text
    # Resolving them: Alertmanager sends resolved notifications, the receiver delivers them.
    for item in alerts:
        item["endsAt"] = datetime.now(timezone.utc).isoformat()
    assert requests.post(f"{am_url}/api/v2/alerts", json=alerts, timeout=5).status_code == 200
    fake.wait_for_messages(2, chat_id=GROUP_CHAT, timeout=20)
    resolved = fake.wait_for_messages(2, chat_id=OTHER_CHAT, timeout=20)[1]
    assert resolved.disable_notification  # route "other" has silent_resolved
    metrics = receiver.metrics()
    assert value_of_metric(metrics, "sitewatch_receiver_webhooks_total", result="accepted") >= 2
    # The start-up check asked Telegram about both routes' chats.
    assert value_of_metric(metrics, "sitewatch_receiver_route_usable", route="duty") == 1
    assert value_of_metric(metrics, "sitewatch_receiver_route_usable", route="other") == 1
    assert "event=telegram_check" in receiver.log_text()
    assert BOT_TOKEN not in receiver.log_text() and WEBHOOK_TOKEN not in receiver.log_text()


def test_a_receiver_killed_with_sigkill_delivers_every_waiting_message_after_restart(tmp_path, fake_telegram,
                                                                                      receiver_process):
    fake = fake_telegram()
    fake.set_mode("500")  # Telegram is down: everything waits in the outbox
    config = write_receiver_config(tmp_path, fake.url)
    first = receiver_process(config)
    for n in range(20):
        chat_route = "duty" if n % 2 == 0 else "other"
        answer = post(f"{first.url}/alert/{chat_route}", payload([alert(site=f"shop-{n}")], group_key=f"g{n}"))
        assert answer.status_code == 200
    assert value_of_metric(first.metrics(), "sitewatch_receiver_outbox_messages") == 20
    first.kill()
    fake.set_mode(None)
    second = receiver_process(config)
    wait_for(lambda: value_of_metric(second.metrics(), "sitewatch_receiver_outbox_messages") == 0, 30,
             "the restarted receiver to drain the outbox")
    assert sites_in(fake.messages(GROUP_CHAT)) == [f"shop-{n}" for n in range(0, 20, 2)]
    assert sites_in(fake.messages(OTHER_CHAT)) == [f"shop-{n}" for n in range(1, 20, 2)]


def test_a_receiver_killed_while_sending_loses_nothing(tmp_path, fake_telegram, receiver_process):
    """Killed at a random moment of a busy delivery: every alert arrives; a repeat is possible only for the
    one message per chat that was on the wire at the kill (the documented at-least-once window)."""
    fake = fake_telegram(enforce_limits=True)
    config = write_receiver_config(tmp_path, fake.url)
    first = receiver_process(config)
    for n in range(60):
        post(f"{first.url}/alert/{'duty' if n % 2 == 0 else 'other'}",
             payload([alert(site=f"shop-{n}")], group_key=f"g{n}"))
    time.sleep(1.2)
    first.kill()
    second = receiver_process(config)
    wait_for(lambda: value_of_metric(second.metrics(), "sitewatch_receiver_outbox_messages") == 0, 60,
             "the restarted receiver to drain the outbox")
    for chat, sites in ((GROUP_CHAT, range(0, 60, 2)), (OTHER_CHAT, range(1, 60, 2))):
        seen = sites_in(fake.messages(chat))
        assert set(seen) == {f"shop-{n}" for n in sites}
        # Order is kept; any repeat is one message's worth, right at the kill.
        assert sorted(set(seen), key=seen.index) == [f"shop-{n}" for n in sites]
        assert len(seen) - len(set(seen)) <= 15


def test_check_config_reports_a_bad_token_and_a_chat_the_bot_cannot_post_to(tmp_path, fake_telegram):
    fake = fake_telegram()
    fake.add_chat(GROUP_CHAT, type="supergroup", title="Дежурные")
    fake.add_chat(OTHER_CHAT, type="supergroup", members={123456: "left"})
    config = write_receiver_config(tmp_path, fake.url)
    result = subprocess.run([sys.executable, "-m", "alertmanager.cli", "check-config", "-c", str(config)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ok   bot main: @" in result.stdout
    assert "ok   route duty: supergroup 'Дежурные'" in result.stdout
    assert "BAD  route other" in result.stdout and "not a member" in result.stdout

    (tmp_path / "bot.token").write_text("999:wrong-token-value\n")
    result = subprocess.run([sys.executable, "-m", "alertmanager.cli", "check-config", "-c", str(config)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 1
    assert "refused the token" in result.stdout and "bots.main.token" in result.stdout
    assert "wrong-token-value" not in result.stdout + result.stderr


def test_check_config_names_the_file_and_path_of_a_mistake(tmp_path):
    config = write_receiver_config(tmp_path, "http://127.0.0.1:9", routes="""
  duty:
    bot: nosuchbot
    chat_id: -100
""")
    result = subprocess.run([sys.executable, "-m", "alertmanager.cli", "check-config", "--offline", "-c",
                             str(config)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert f"{config}: line 12: routes.duty.bot: expected one of the bots defined in bots (main)" in result.stderr


def test_a_dry_run_prints_messages_as_plain_text_instead_of_sending_them(tmp_path, receiver_process):
    receiver = receiver_process(write_receiver_config(tmp_path, "http://127.0.0.1:9"), "--dry-run")
    assert post(f"{receiver.url}/alert/duty", payload([alert(site="shop-5", client="ООО <Ромашка>")])) \
        .status_code == 200
    wait_for(lambda: "event=dry_run" in receiver.log_text(), 10, "the dry-run line")
    text = receiver.log_text()
    assert "──── Telegram → route duty: chat " in text and "площадка shop-5" in text
    assert "клиент ООО <Ромашка>" in text  # the reader's text: unescaped, no tags
    assert "<b>" not in text and "&lt;" not in text


def test_the_receiver_tells_alertmanager_to_retry_only_when_its_outbox_is_unwritable(tmp_path, receiver_process):
    receiver = receiver_process(write_receiver_config(tmp_path, "http://127.0.0.1:9"), "--dry-run")
    body = json.dumps(payload([alert()])).encode()
    answer = requests.post(f"{receiver.url}/alert/duty", data=body[:-5],
                           headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}, timeout=5)
    assert answer.status_code == 400  # a broken body is the sender's fault: retrying cannot help
    assert answer.json()["error"] == "bad_json"
