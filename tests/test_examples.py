"""Every example config in examples/ loads, so what the docs point users at is never broken."""

from __future__ import annotations

import pytest

from conftest import ROOT
from exporter.config import load_config
from exporter.secrets import SecretValue

EXAMPLES = sorted((ROOT / "examples").glob("*.yml"))


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
