"""`sitewatch-ingest check-config`: a good config passes (exit 0), a bad one names the file, the path in it,
the line and what was expected (exit 2), and never echoes a secret; the example config is valid and keeps
its secrets out of the file."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from ingest.cli import main
from ingest.config import load_ingest_config
from ingest_data.ingest_kit import SECRETS, write_ingest_config

GOOD = """\
distributors:
  rogaikopita599:
    token: {env: INGEST_TEST_TOKEN}
    getad_api_key: {env: INGEST_TEST_GETAD_KEY}
    labels: {distributor: rogaikopita, telegram_route: rogaikopita}
sites:
  - id: gorduma-kodeks
    distributor: rogaikopita599
    labels: {client: gorodskaya-duma}
    smartstatus: {client: GORDUMA}
  - id: cafe
    distributor: rogaikopita599
    getad: {serials: ["00123456790012"], hostnames: [KASSA-1]}
"""


@pytest.fixture(autouse=True)
def secrets_in_the_environment(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def check_config(tmp_path, capsys, text: str) -> tuple[int, str, str]:
    path = write_ingest_config(tmp_path, text)
    code = main(["check-config", "--config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_good_config_passes_with_exit_0(tmp_path, capsys):
    code, out, err = check_config(tmp_path, capsys, GOOD)
    assert code == 0, err
    assert out == f"{tmp_path / 'ingest.yml'}: valid, 1 distributor(s), 2 site(s); smartstatus posts to /upload, " \
                  "getad to /api/submit_json\n"


@pytest.mark.parametrize("change, line, message", [
    (("token: {env: INGEST_TEST_TOKEN}", "token: 12345"), 3,
     "distributors.rogaikopita599.token: expected a secret written as {env: NAME}, {file: path} or enc:..."),
    (("    distributor: rogaikopita599\n    labels: {client: gorodskaya-duma}",
      "    distibutor: rogaikopita599\n    labels: {client: gorodskaya-duma}"), 8,
     "sites[0].distibutor: expected one of the keys id, distributor, labels, timezone, smartstatus, getad, got unknown "
     "key 'distibutor' (did you mean 'distributor'?)"),
    (("  - id: cafe\n    distributor: rogaikopita599", "  - id: cafe\n    distributor: rogaikopita600"), 12,
     "sites[1].distributor: expected one of the distributors (rogaikopita599), got the string 'rogaikopita600'"),
    (('serials: ["00123456790012"]', "serials: [123456790012]"), 13,
     "sites[1].getad.serials[0]: expected a non-empty string, got the number 123456790012"),
    (("smartstatus: {client: GORDUMA}", "smartstatus: {client: GORDUMA}\n  - {id: dup, distributor: rogaikopita599, "
                                        "smartstatus: {client: gorduma}}"), 11,
     "sites[1].smartstatus.client: expected a client of this distributor (client names are compared ignoring case) "
     "not used before (sites[0].smartstatus.client already is it)"),
    (("getad: {serials: [\"00123456790012\"], hostnames: [KASSA-1]}", "getad: {}"), 13,
     "sites[1].getad: expected a way to tell this site's posts among the distributor's"),
    (("labels: {client: gorodskaya-duma}", "labels: {client: gorodskaya-duma, source: x}"), 9,
     "sites[0].labels.source: expected a label name that sitewatch-ingest does not set itself (not source)"),
    (("token: {env: INGEST_TEST_TOKEN}", "token: {env: INGEST_TEST_NOT_SET}"), 3,
     "distributors.rogaikopita599.token: the environment variable INGEST_TEST_NOT_SET is not set"),
    # both sources under one check name would make the rules' (site, check) joins many-to-many, fleet-wide
    (("    smartstatus: {client: GORDUMA}", "    smartstatus: {client: GORDUMA, check: till}\n"
                                          "    getad: {serials: [\"1\"], check: till}"), 11,
     "sites[0].getad.check: expected a check name other than smartstatus's 'till'"),
    (("sites:", "getad: {path: /upload}\nsites:"), 6,
     "getad.path: expected a path other than smartstatus.path (/upload), got the string '/upload'"),
])
def test_a_bad_config_names_the_file_the_path_and_the_line_and_exits_2(tmp_path, capsys, change, line, message):
    old, new = change
    assert old in GOOD
    code, out, err = check_config(tmp_path, capsys, GOOD.replace(old, new, 1))
    assert code == 2 and out == ""
    assert err.startswith(f"config error: {tmp_path / 'ingest.yml'}: line {line}: {message}"), err
    assert len(err.splitlines()) == 1


def test_the_real_command_reports_a_broken_yaml_at_its_line_and_exits_2(tmp_path):
    path = write_ingest_config(tmp_path, GOOD.replace("sites:", "sites: [\n"))
    for command in (["check-config"], ["run", "--web.listen-address", "127.0.0.1:0"]):
        result = subprocess.run([sys.executable, "-m", "ingest.cli", *command, "--config", str(path)], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert result.stderr.startswith(f"config error: {path}: line "), result.stderr
        assert "not valid YAML" in result.stderr


def test_no_secret_is_echoed_when_one_is_wrong_or_plain(tmp_path, capsys):
    key = SECRETS["INGEST_TEST_GETAD_KEY"]
    text = GOOD.replace("getad: {serials", f"getad: {{api_key: {key}, serials")  # the distributor's key, plainly
    code, out, err = check_config(tmp_path, capsys, text)
    assert code == 2 and key not in err and key not in out
    assert "sites[1].getad.api_key: expected a key of its own (it is the same as " \
           "distributors.rogaikopita599.getad_api_key)" in err
    text = GOOD.replace("token: {env: INGEST_TEST_TOKEN}", "token: plain-text-token-123")
    code, out, err = check_config(tmp_path, capsys, text)
    assert code == 0
    assert "event=plain_secret" in err and "path=distributors.rogaikopita599.token" in err  # the log, on stderr
    assert "plain-text-token-123" not in out + err


def test_the_example_config_is_valid_and_keeps_its_secrets_out_of_the_file(monkeypatch):
    path = ROOT / "examples" / "ingest.yml"

    def env_names(node):
        if isinstance(node, dict):
            if set(node) == {"env"}:
                yield node["env"]
            for value in node.values():
                yield from env_names(value)
        elif isinstance(node, list):
            for value in node:
                yield from env_names(value)

    for index, name in enumerate(env_names(yaml.safe_load(path.read_text(encoding="utf-8")))):
        monkeypatch.setenv(name, f"example-secret-{index}")
    config = load_ingest_config(path)
    secrets = [d.token for d in config.distributors.values()] + [d.getad_api_key for d in config.distributors.values()]
    secrets += [site.getad.api_key for site in config.sites if site.getad]
    assert all(secret is None or secret.kind != "plain" for secret in secrets)
    assert {site.id for site in config.sites} == {"gorduma-kodeks", "romashka-cafe-01", "romashka-cafe-02"}
    assert config.storage_path == ROOT / "examples" / "sitewatch-ingest.db"


def test_the_getad_silent_time_is_two_intervals_unless_given(tmp_path):
    path = write_ingest_config(tmp_path, GOOD + "getad: {interval: 12h}\n")
    assert load_ingest_config(path).getad.silent_after == 24 * 3600
    path = write_ingest_config(tmp_path, GOOD + "getad: {interval: 12h, silent_after: 30h}\n")
    assert load_ingest_config(path).getad.silent_after == 30 * 3600
    assert load_ingest_config(write_ingest_config(tmp_path, GOOD)).smartstatus.silent_after == 40 * 60
