"""The receiver's config: every mistake names the file, the path inside it and what was expected."""

from __future__ import annotations

import logging

import pytest

from alertmanager.config import load_receiver_config
from exporter.config import ConfigError
from receiver_kit import BOT_TOKEN, write_receiver_config


def broken(tmp_path, old: str, new: str):
    config = write_receiver_config(tmp_path, "http://127.0.0.1:9")
    text = config.read_text(encoding="utf-8")
    assert old in text
    config.write_text(text.replace(old, new, 1), encoding="utf-8")
    return config


@pytest.mark.parametrize("old, new, message", [
    ("chat_id: -1001000000001", "chat_id: chat-one",
     "routes.duty.chat_id: expected a chat id: a number such as -1001234567890, or a channel's @username"),
    ("bot: main\n    chat_id: -1001000000001", "bot: mian\n    chat_id: -1001000000001",
     "routes.duty.bot: expected one of the bots defined in bots (main), got the string 'mian'"),
    ("  timeout: 2s", "  timout: 2s", "telegram.timout: expected one of the keys"),
    ("token: {file: bot.token}", "token: {file: missing.token}", "bots.main.token: cannot read the secret file"),
    ("api_url: http://127.0.0.1:9", "api_url: ftp://example", "telegram.api_url: expected the Bot API's base URL"),
    ("timezone: Europe/Moscow", "timezone: Moscow/Kremlin", "timezone: expected an IANA time zone name"),
    ("    silent_resolved: true", "    silent_resolved: yes-please",
     "routes.other.silent_resolved: expected"),
    ("    silent_resolved: true", "    thread_id: 0", "routes.other.thread_id: expected an integer of at least 1"),
])
def test_a_config_mistake_names_the_file_the_path_and_the_expectation(tmp_path, old, new, message):
    config = broken(tmp_path, old, new)
    with pytest.raises(ConfigError) as caught:
        load_receiver_config(config)
    assert str(caught.value).startswith(f"{config}: ")
    assert message in str(caught.value)


def test_a_quoted_chat_id_is_read_as_the_number_it_is(tmp_path):
    config = load_receiver_config(broken(tmp_path, "chat_id: -1001000000001", "chat_id: '-1001000000001'"))
    assert config.routes["duty"].chat_id == -1001000000001


def test_a_plain_text_token_works_but_is_warned_about_without_showing_it(tmp_path, caplog):
    config_path = broken(tmp_path, "token: {file: bot.token}", f"token: '{BOT_TOKEN}'")
    with caplog.at_level(logging.WARNING):
        config = load_receiver_config(config_path)
    assert config.bots["main"].token.reveal() == BOT_TOKEN
    assert "path=bots.main.token" in caplog.text and BOT_TOKEN not in caplog.text


def test_relative_paths_are_read_from_the_configs_folder(tmp_path):
    config = load_receiver_config(broken(tmp_path, f"path: {tmp_path / 'outbox.db'}", "path: data/outbox.db"))
    assert config.outbox_path == tmp_path / "data" / "outbox.db"
