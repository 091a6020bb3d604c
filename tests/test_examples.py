"""Every example config in examples/ loads, so what the docs point users at is never broken."""

from __future__ import annotations

import pytest

from conftest import ROOT
from exporter.config import load_config
from exporter.secrets import SecretValue

# examples/ingest.yml is sitewatch-ingest's and examples/web-config.yml a --web.config.file, not site
# configs: tests/test_ingest_config.py and tests/test_web_config.py read them.
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yml") if p.name not in ("ingest.yml", "web-config.yml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_is_valid_and_keeps_secrets_out_of_the_file(path, monkeypatch):
    import yaml

    def env_names(node):
        if isinstance(node, dict):
            if set(node) == {"env"}:
                yield node["env"]
            for value in node.values():
                yield from env_names(value)
        elif isinstance(node, list):
            for value in node:
                yield from env_names(value)

    for name in env_names(yaml.safe_load(path.read_text(encoding="utf-8"))):
        monkeypatch.setenv(name, "example-secret-value")
    config = load_config(path)
    assert config.checks()
    for check in config.checks():
        for value in _values(check.options):
            if isinstance(value, SecretValue):
                assert value.kind != "plain", f"{path.name}: {value.path} is written in plain text"


def _values(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _values(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _values(value)
    else:
        yield node


def test_the_example_receiver_config_is_valid_and_keeps_tokens_out_of_the_file(monkeypatch):
    from alertmanager.config import load_receiver_config

    monkeypatch.setenv("SITEWATCH_DUTY_BOT_TOKEN", "123:example-token")
    monkeypatch.setenv("SITEWATCH_RECEIVER_TOKEN", "example-webhook-token")
    config = load_receiver_config(ROOT / "alertmanager" / "receiver.yml")
    assert set(config.routes) == {"duty", "kkt", "info", "kodeks-spb", "pos", "watchdog"}
    assert config.routes["kkt"].thread_id == 42
    assert all(bot.token.kind != "plain" for bot in config.bots.values())
    assert config.bearer_token is not None and config.bearer_token.kind != "plain"


def test_the_example_alertmanager_config_passes_amtool_and_posts_to_the_receivers_routes():
    import shutil
    import subprocess

    import yaml

    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is not installed: run 'make test', which installs prometheus-alertmanager")
    path = ROOT / "alertmanager" / "alertmanager.yml"
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    routes = set(yaml.safe_load((ROOT / "alertmanager" / "receiver.yml").read_text(encoding="utf-8"))["routes"])
    for receiver in yaml.safe_load(path.read_text(encoding="utf-8"))["receivers"]:
        for webhook in receiver["webhook_configs"]:
            assert webhook["url"].rsplit("/alert/", 1)[1] in routes
            assert "credentials_file" in webhook["http_config"]["authorization"]


def test_the_windows_example_loads_with_its_password_file_beside_it(tmp_path):
    # The technician's example (in the Windows bundle) reads the site's password from a file next to it,
    # as a task run by SYSTEM has no environment to take it from.
    import shutil

    example = ROOT / "examples" / "windows" / "pusher-site.yml"
    shutil.copy(example, tmp_path / "site.yml")
    (tmp_path / "shop-101.password").write_text("example-secret-value\n", encoding="utf-8")
    config = load_config(tmp_path / "site.yml")
    assert [check.name for check in config.checks()] == ["router", "kkt", "back-office"]
    assert config.push["basic_auth"]["password"].kind == "file"
    assert config.sites[0].hours is not None


def test_the_windows_exporter_example_loads():
    config = load_config(ROOT / "examples" / "windows" / "exporter-site.yml")
    assert [check.name for check in config.checks()] == ["office-pc", "kkt", "kkt-getad"]
