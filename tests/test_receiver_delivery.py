"""Delivery to Telegram: the receiver's sender against a fake Bot API on loopback that misbehaves on demand."""

from __future__ import annotations

import logging
import time

from alertmanager.app import receiver_of
from conftest import value_of_metric
from receiver_kit import (sites_in, BOT_TOKEN, GROUP_CHAT, OTHER_CHAT, WEBHOOK_TOKEN, alert, payload, started_at,
                          wait_for, write_receiver_config)

AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


def send(app, route: str, alerts: list[dict], group_key: str | None = None) -> None:
    answer = app.test_client().post(f"/alert/{route}", json=payload(alerts, group_key), headers=AUTH)
    assert answer.status_code == 200, answer.get_data(as_text=True)


def metric(app, name: str, **labels: str) -> float | None:
    return value_of_metric(app.test_client().get("/metrics").get_data(as_text=True), name, **labels)



def test_an_alert_arrives_in_its_routes_chat_as_html(tmp_path, fake_telegram, receiver_app):
    fake = fake_telegram()
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    send(app, "duty", [alert(site="shop-7", client="Ромашка")])
    [message] = fake.wait_for_messages(1, chat_id=GROUP_CHAT)
    assert message.parse_mode == "HTML"
    assert "shop-7" in message.text and "Ромашка" in message.text
    wait_for(lambda: metric(app, "sitewatch_receiver_messages_sent_total", route="duty") == 1, 5, "the sent counter")
    assert metric(app, "sitewatch_receiver_outbox_messages") == 0


def test_resolved_messages_of_a_silent_route_make_no_sound_and_firing_ones_do(tmp_path, fake_telegram, receiver_app):
    fake = fake_telegram()
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    send(app, "other", [alert(site="shop-1")])
    fake.wait_for_messages(1, chat_id=OTHER_CHAT)
    send(app, "other", [alert(site="shop-1", status="resolved")])
    firing, resolved = fake.wait_for_messages(2, chat_id=OTHER_CHAT)
    assert not firing.disable_notification
    assert resolved.disable_notification


def test_a_label_with_markup_is_shown_literally(tmp_path, fake_telegram, receiver_app):
    fake = fake_telegram()
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    send(app, "duty", [alert(site="shop-1", client="<b>& Co")])
    [message] = fake.wait_for_messages(1, chat_id=GROUP_CHAT)
    assert "&lt;b&gt;&amp; Co" in message.text  # the fake validated the HTML, as Telegram does


def test_a_forum_topic_route_posts_into_its_thread(tmp_path, fake_telegram, receiver_app):
    fake = fake_telegram()
    fake.add_chat(GROUP_CHAT, type="supergroup", is_forum=True)
    app = receiver_app(write_receiver_config(tmp_path, fake.url, routes=f"""
  kkt:
    bot: main
    chat_id: {GROUP_CHAT}
    thread_id: 42
"""))
    send(app, "kkt", [alert("FnExpiresSoon", site="shop-1")])
    [message] = fake.wait_for_messages(1, chat_id=GROUP_CHAT)
    assert message.message_thread_id == 42


def test_retry_after_from_a_429_is_honoured_and_the_message_sent_once(tmp_path, fake_telegram, receiver_app):
    fake = fake_telegram()
    fake.fail_next(1, "429", retry_after=2)
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    started = time.monotonic()
    send(app, "duty", [alert(site="shop-1")])
    fake.wait_for_messages(1, chat_id=GROUP_CHAT, timeout=10)
    assert time.monotonic() - started >= 1.9
    time.sleep(0.5)
    assert len(fake.messages()) == 1
    assert [status for method, _chat, status in fake.requests if method == "sendMessage"] == [429, 200]


def test_telegram_down_for_a_while_loses_nothing_and_keeps_each_chats_order(tmp_path, fake_telegram,
                                                                             receiver_app, caplog):
    fake = fake_telegram()
    fake.set_mode("500")
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    with caplog.at_level(logging.INFO, logger="sitewatch.receiver"):
        for n in range(6):
            send(app, "duty", [alert(site=f"shop-{n}")], group_key=f"g{n}")
            send(app, "other", [alert(site=f"shop-{n + 10}")], group_key=f"h{n}")
        time.sleep(2.5)
        assert fake.messages() == []
        assert metric(app, "sitewatch_receiver_outbox_messages") == 12
        fake.set_mode(None)
        wait_for(lambda: metric(app, "sitewatch_receiver_outbox_messages") == 0, 15, "the outbox to drain")
    assert sites_in(fake.messages(GROUP_CHAT)) == [f"shop-{n}" for n in range(6)]
    assert sites_in(fake.messages(OTHER_CHAT)) == [f"shop-{n + 10}" for n in range(6)]
    # One warning per chat when the trouble starts, one line when it ends; not one per retry.
    assert caplog.text.count("event=telegram_unavailable") == 2
    assert caplog.text.count("event=telegram_recovered") == 2
    assert BOT_TOKEN not in caplog.text


def test_an_unreachable_api_is_retried_until_it_answers(tmp_path, fake_telegram, receiver_app, caplog):
    from conftest import free_port
    from simulators.telegram import FakeTelegram

    port = free_port()
    app = receiver_app(write_receiver_config(tmp_path, f"http://127.0.0.1:{port}"))
    with caplog.at_level(logging.WARNING, logger="sitewatch.receiver"):
        send(app, "duty", [alert(site="shop-1")])
        time.sleep(1.5)
    assert "kind=network" in caplog.text and BOT_TOKEN not in caplog.text
    with FakeTelegram(port=port) as fake:
        fake.wait_for_messages(1, chat_id=GROUP_CHAT, timeout=10)


def test_a_hanging_api_times_out_and_the_message_still_arrives(tmp_path, fake_telegram, receiver_app):
    fake = fake_telegram(hang_seconds=4)
    fake.fail_next(1, "hang")
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    send(app, "duty", [alert(site="shop-1")])
    fake.wait_for_messages(1, chat_id=GROUP_CHAT, timeout=15)


def test_html_telegram_cannot_parse_is_resent_once_as_plain_text(tmp_path, fake_telegram, receiver_app, caplog):
    fake = fake_telegram()
    fake.fail_next(1, "reject_html")
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    with caplog.at_level(logging.WARNING, logger="sitewatch.receiver"):
        send(app, "duty", [alert(site="shop-1")])
        [message] = fake.wait_for_messages(1, chat_id=GROUP_CHAT)
    assert message.parse_mode is None
    assert "shop-1" in message.text and "<b>" not in message.text
    assert "event=html_rejected" in caplog.text


def test_a_group_upgraded_to_a_supergroup_is_followed_and_remembered(tmp_path, fake_telegram, receiver_app, caplog):
    new_chat = -1009999999999
    fake = fake_telegram()
    fake.migrate_chat(GROUP_CHAT, new_chat)
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    with caplog.at_level(logging.WARNING, logger="sitewatch.receiver"):
        send(app, "duty", [alert(site="shop-1")])
        fake.wait_for_messages(1, chat_id=new_chat)
    assert f"new_chat={new_chat}" in caplog.text and "routes.duty.chat_id" in caplog.text
    send(app, "duty", [alert(site="shop-2")])
    fake.wait_for_messages(2, chat_id=new_chat)
    old_sends = [r for r in fake.requests if r[0] == "sendMessage" and r[1] == str(GROUP_CHAT)]
    assert len(old_sends) == 1  # the new id was remembered: no second round trip to the old one


def test_a_blocked_bot_dead_letters_the_chats_messages_at_once_with_a_clear_log(tmp_path, fake_telegram,
                                                                                 receiver_app, caplog):
    fake = fake_telegram()
    fake.block_bot(GROUP_CHAT)
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    with caplog.at_level(logging.ERROR, logger="sitewatch.receiver"):
        send(app, "duty", [alert(site="shop-1"), alert(site="shop-2")])
        wait_for(lambda: metric(app, "sitewatch_receiver_messages_failed_total", route="duty",
                                reason="forbidden") == 2, 5, "the give-up to be counted")
    assert "event=dead_letter route=duty" in caplog.text and "reason=forbidden" in caplog.text
    assert metric(app, "sitewatch_receiver_outbox_messages") == 0
    assert receiver_of(app).outbox.dead_letter_rows()[0]["reason"] == "forbidden"


def test_a_chat_that_does_not_exist_is_dead_lettered_naming_the_route(tmp_path, fake_telegram, receiver_app, caplog):
    fake = fake_telegram()
    fake.forget_chat(OTHER_CHAT)
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    with caplog.at_level(logging.ERROR, logger="sitewatch.receiver"):
        send(app, "other", [alert(site="shop-1")])
        wait_for(lambda: metric(app, "sitewatch_receiver_messages_failed_total", route="other",
                                reason="chat_not_found") == 1, 5, "the give-up to be counted")
    assert "route=other" in caplog.text and "routes.other.chat_id" in caplog.text


def test_a_storm_for_one_group_chat_arrives_as_a_few_digests_within_seconds(tmp_path, fake_telegram, receiver_app):
    fake = fake_telegram(enforce_limits=True)
    app = receiver_app(write_receiver_config(tmp_path, fake.url))
    started = time.monotonic()
    for n in range(100):
        send(app, "duty", [alert(site=f"shop-{n}")], group_key=f"group-{n}")
    wait_for(lambda: metric(app, "sitewatch_receiver_outbox_messages") == 0, 30, "the storm to be delivered")
    took = time.monotonic() - started
    messages = fake.messages(GROUP_CHAT)
    assert sites_in(messages) == [f"shop-{n}" for n in range(100)]  # all of them, once, in order
    assert len(messages) <= 15, f"{len(messages)} messages for 100 alerts"
    assert took < 30
    assert fake.rate_limited == 0  # our own limiter kept within Telegram's


def test_firing_and_resolved_waiting_together_are_kept_apart_and_cancel_out(tmp_path, fake_telegram, receiver_app):
    fake = fake_telegram()
    app = receiver_app(write_receiver_config(tmp_path, fake.url), start_sender=False)
    send(app, "duty", [alert(site="shop-1"), alert(site="shop-2")], group_key="a")
    send(app, "duty", [alert(site="shop-3", status="resolved", starts_at=started_at(-60))], group_key="b")
    send(app, "duty", [alert(site="shop-1", status="resolved")], group_key="c")  # cancels shop-1's firing
    send(app, "duty", [alert(site="shop-4")], group_key="d")
    receiver_of(app).sender.start()
    wait_for(lambda: metric(app, "sitewatch_receiver_outbox_messages") == 0, 15, "the outbox to drain")
    messages = fake.messages(GROUP_CHAT)
    assert [sites_in([m]) for m in messages] == [["shop-2", "shop-4"], ["shop-3"]]
    assert "shop-1" not in "".join(m.text for m in messages)


def test_two_receivers_on_one_outbox_have_one_sender(tmp_path, fake_telegram, receiver_app):
    fake = fake_telegram()
    config = write_receiver_config(tmp_path, fake.url)
    first = receiver_app(config)
    second = receiver_app(config)
    wait_for(lambda: receiver_of(first).sender.active or receiver_of(second).sender.active, 10, "a sender")
    time.sleep(1.5)
    assert receiver_of(first).sender.active != receiver_of(second).sender.active
    for n in range(10):
        send(first if n % 2 else second, "duty", [alert(site=f"shop-{n}")], group_key=f"g{n}")
    wait_for(lambda: len(sites_in(fake.messages(GROUP_CHAT))) == 10, 15, "ten alerts")
    assert sorted(sites_in(fake.messages(GROUP_CHAT))) == sorted(f"shop-{n}" for n in range(10))
    # The active one stops: the other takes over the outbox.
    active, standby = (first, second) if receiver_of(first).sender.active else (second, first)
    receiver_of(active).sender.stop()
    wait_for(lambda: receiver_of(standby).sender.active, 10, "the standby to take over")
    send(standby, "duty", [alert(site="shop-99")], group_key="late")
    wait_for(lambda: "shop-99" in sites_in(fake.messages(GROUP_CHAT)), 10, "the late alert")


def test_a_ten_thousand_alert_group_is_split_into_readable_messages_with_a_summary(tmp_path, fake_telegram,
                                                                                   receiver_app):
    fake = fake_telegram()
    config = write_receiver_config(tmp_path, fake.url, routes=f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    max_messages: 8
""", telegram_extra="  rate_limits: {chat_interval: 0s, group_per_minute: 1000}")
    app = receiver_app(config)
    started = time.monotonic()
    body = payload([alert(site=f"shop-{n}") for n in range(10_000)], group_key="huge")
    body["groupLabels"] = {"alertname": "SiteDown"}  # as Alertmanager sends a group spanning many sites
    body["commonLabels"] = {"alertname": "SiteDown", "severity": "critical"}
    assert app.test_client().post("/alert/duty", json=body, headers=AUTH).status_code == 200
    accepted = time.monotonic() - started
    wait_for(lambda: metric(app, "sitewatch_receiver_outbox_messages") == 0, 30, "the group to be sent")
    messages = fake.messages(GROUP_CHAT)
    assert len(messages) == 8  # every one passed the fake's HTML and 4096-character checks
    shown = sites_in(messages)
    assert shown == [f"shop-{n}" for n in range(len(shown))]  # the first alerts, in order, none twice
    assert f"и ещё {10_000 - len(shown):,}".replace(",", "\u00a0") in messages[-1].text
    assert accepted < 10, f"a 10,000-alert webhook took {accepted:.1f}s to accept"


def test_an_alert_undeliverable_for_longer_than_max_age_is_given_up_with_an_error(tmp_path, fake_telegram,
                                                                                  receiver_app, caplog):
    fake = fake_telegram()
    fake.set_mode("500")
    app = receiver_app(write_receiver_config(tmp_path, fake.url, outbox_extra="  max_age: 2s"))
    with caplog.at_level(logging.ERROR, logger="sitewatch.receiver"):
        send(app, "duty", [alert(site="shop-1")])
        wait_for(lambda: metric(app, "sitewatch_receiver_messages_failed_total", route="duty",
                                reason="expired") == 1, 10, "the alert to expire")
    assert "reason=expired" in caplog.text and "route=duty" in caplog.text
    assert metric(app, "sitewatch_receiver_outbox_messages") == 0
    fake.set_mode(None)
    time.sleep(1.5)
    assert fake.messages() == []


def test_a_big_group_within_its_cap_arrives_whole_each_alert_once_in_order(tmp_path, fake_telegram, receiver_app):
    fake = fake_telegram()
    config = write_receiver_config(tmp_path, fake.url, routes=f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    max_messages: 50
""", telegram_extra="  rate_limits: {chat_interval: 0s, group_per_minute: 10000, bot_per_second: 10000}")
    app = receiver_app(config)
    body = payload([alert(site=f"shop-{n}") for n in range(500)], group_key="big")
    body["groupLabels"] = {"alertname": "SiteDown"}
    body["commonLabels"] = {"alertname": "SiteDown", "severity": "critical"}
    assert app.test_client().post("/alert/duty", json=body, headers=AUTH).status_code == 200
    wait_for(lambda: metric(app, "sitewatch_receiver_outbox_messages") == 0, 60, "the group to be sent")
    messages = fake.messages(GROUP_CHAT)
    assert sites_in(messages) == [f"shop-{n}" for n in range(500)]
    assert "и ещё" not in messages[-1].text
    assert len(messages) <= 50


def test_a_site_in_two_routes_of_one_chat_is_told_there_once(tmp_path, fake_telegram, receiver_app):
    """A partner's route and ours may post to the same chat: the alert arrives once; other chats still get it."""
    fake = fake_telegram()
    app = receiver_app(write_receiver_config(tmp_path, fake.url, routes=f"""
  pos:
    bot: main
    chat_id: {GROUP_CHAT}
  kkt:
    bot: main
    chat_id: {GROUP_CHAT}
  elsewhere:
    bot: main
    chat_id: {OTHER_CHAT}
"""))
    one = alert("FnExpiring", site="shop-1", kkt="001")
    send(app, "pos", [one])
    send(app, "kkt", [one])
    send(app, "elsewhere", [one])
    fake.wait_for_messages(1, chat_id=OTHER_CHAT)
    time.sleep(1.5)
    assert len(fake.messages(GROUP_CHAT)) == 1
    assert metric(app, "sitewatch_receiver_alerts_already_told_total", route="kkt") == 1
    # its resolution, from both routes, arrives once too
    resolved = alert("FnExpiring", site="shop-1", kkt="001", status="resolved")
    send(app, "pos", [resolved])
    send(app, "kkt", [resolved])
    fake.wait_for_messages(2, chat_id=GROUP_CHAT)
    time.sleep(1.5)
    assert len(fake.messages(GROUP_CHAT)) == 2
