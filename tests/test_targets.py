"""``sitewatch-exporter targets add|del|list`` and the targets file the running exporter reloads by itself.

Everything is real: the CLI runs as a subprocess on real files in `tmp_path`, concurrent edits come from
two processes, and reloads are watched on a real exporter process (started and stopped by pid through
the `start_exporter` fixture) that pings 127.0.0.1 and connects to a port this test listens on.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, value_of_metric, wait_until, write_config

from exporter import schema
from exporter import targets as targets_module
from exporter.config import ConfigError, load_config
from exporter.targets import TargetsFile

# Targets of their own site run on the top-level defaults (a ping of 5 packets 1s apart needs 6s);
# targets in the site "lab" run every second on that site's defaults.
CONFIG = """\
defaults: {interval: 7s, timeout: 6500ms}
targets_file: targets.yml
sites:
  - id: lab
    labels: {client: romashka}
    defaults: {interval: 1s, timeout: 900ms}
    checks:
      - name: web
        tcp: {host: 127.0.0.1, port: 9}
"""


@pytest.fixture
def config(tmp_path) -> Path:
    return write_config(tmp_path / "site.yml", CONFIG)


@pytest.fixture
def listening_port():
    """A loopback port something listens on, for tcp checks that pass."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        yield server.getsockname()[1]


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def targets(command: str, config: Path, *args: str) -> subprocess.CompletedProcess:
    return cli("targets", command, "--config", str(config), *args)


def sha_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:6]


# --- the command line on files -------------------------------------------------------------------------


def test_add_list_del_round_trip_through_the_cli(config, tmp_path):
    added = targets("add", config, "10.0.0.5", "kassa-3", "--check", "ping", "--check", "tcp:3389",
                    "--check", "http://10.0.0.5/", "--client", "romashka", "--telegram-route", "pos")
    assert added.returncode == 0, added.stderr
    targets_file = tmp_path / "targets.yml"
    assert added.stdout.strip() == (f"added kassa-3 (id {sha_id('kassa-3')}): ping,tcp:3389,http://10.0.0.5/ "
                                    f"10.0.0.5 -> {targets_file}")
    # A ping in "lab" would need a 6s timeout, more than the site's 1s interval allows: refused, by the config.
    refused = targets("add", config, "router.example.ru", "router", "--site", "lab")
    assert refused.returncode == 1 and "targets[1].checks[0].timeout: expected a check timeout of at least 6s" \
        in refused.stderr, refused.stderr
    assert targets("add", config, "router.example.ru", "router", "--site", "lab", "--check", "tcp:80").returncode == 0

    text = targets_file.read_text(encoding="utf-8")
    assert text.startswith("# Devices this exporter checks, managed by `sitewatch-exporter targets")
    assert [t.name for t in TargetsFile(targets_file).load()] == ["kassa-3", "router"]

    # The targets are checks of the loaded config: kassa-3 in a site of its own, router in "lab".
    loaded = load_config(config)
    assert [c.name for c in loaded.site("kassa-3").checks] == ["kassa-3", "kassa-3-tcp3389", "kassa-3-http"]
    assert dict(loaded.site("kassa-3").labels) == {"client": "romashka", "telegram_route": "pos"}
    assert [c.name for c in loaded.site("lab").checks] == ["web", "router-tcp80"]
    assert loaded.site("lab").checks[1].schedule.interval == 1.0  # the site's defaults

    listed = targets("list", config, "--exporter", "http://127.0.0.1:9/")  # nothing listens there
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ADDRESS", "CHECKS", "SITE", "LABELS", "STATE"]
    assert lines[1].split()[:6] == [sha_id("kassa-3"), "kassa-3", "10.0.0.5", "ping,tcp:3389,http://10.0.0.5/",
                                    "kassa-3", "client=romashka,telegram_route=pos"]
    assert lines[2].split()[:6] == [sha_id("router"), "router", "router.example.ru", "tcp:80", "lab", "-"]
    assert lines[1].endswith("unreachable exporter") and lines[2].endswith("unreachable exporter")

    removed = targets("del", config, "kassa-3")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == (f"removed kassa-3 (id {sha_id('kassa-3')}): ping,tcp:3389,http://10.0.0.5/ "
                                      f"10.0.0.5 from {targets_file}")
    by_id = targets("del", config, sha_id("router"))
    assert by_id.returncode == 0 and by_id.stdout.startswith("removed router ")
    assert TargetsFile(targets_file).load() == []
    assert "(no targets in" in targets("list", config, "--exporter", "http://127.0.0.1:9/").stdout


def test_id_is_the_start_of_the_names_sha256_and_survives_del_and_add(config):
    first = targets("add", config, "10.0.0.5", "kassa-3")
    assert f"(id {sha_id('kassa-3')})" in first.stdout
    assert targets("del", config, "kassa-3").returncode == 0
    again = targets("add", config, "10.0.0.77", "kassa-3")
    assert f"(id {sha_id('kassa-3')})" in again.stdout


def test_a_duplicate_name_is_refused_with_a_clear_message(config, tmp_path):
    assert targets("add", config, "10.0.0.5", "kassa-3").returncode == 0
    before = (tmp_path / "targets.yml").read_bytes()
    duplicate = targets("add", config, "10.0.0.6", "kassa-3")
    assert duplicate.returncode == 1
    assert duplicate.stderr.strip() == (f"error: a target named 'kassa-3' already exists (id {sha_id('kassa-3')}, "
                                        "address 10.0.0.5)")
    same_address = targets("add", config, "10.0.0.5", "kassa-4")
    assert same_address.returncode == 1
    assert "10.0.0.5 is already checked by 'kassa-3'" in same_address.stderr
    assert (tmp_path / "targets.yml").read_bytes() == before


@pytest.mark.parametrize("address", ["999.1.1.1", "http://10.0.0.5/", "10.0.0.5:80", "kassa 3", "",
                                     "bad_host.ru", "10.0.0", "x" * 64 + ".ru"])
def test_a_bad_address_is_refused_and_the_file_is_left_alone(config, tmp_path, address):
    assert targets("add", config, "10.0.0.5", "kassa-3").returncode == 0
    before = (tmp_path / "targets.yml").read_bytes()
    refused = targets("add", config, address, "kassa-4")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: address: expected an IPv4 or IPv6 address or a host name"), refused.stderr
    assert (tmp_path / "targets.yml").read_bytes() == before


def test_addresses_are_told_apart_from_what_is_not_one():
    good = {"10.0.0.5": "10.0.0.5", "::1": "::1", "FE80::0001": "fe80::1", "Kassa-3.Shop.local": "kassa-3.shop.local",
            "localhost": "localhost", "a" * 63 + ".ru": "a" * 63 + ".ru", "1.example": "1.example"}
    for text, normal in good.items():
        assert targets_module.address(text, "address") == normal
    for text in ["999.1.1.1", "1.2.3.4.5", "-a.ru", "a-.ru", "a..ru", "a.ru.", "a b", "10.0.0.5/24", "[::1]",
                 "host:22", "ftp://x", ".", "a" * 64, ".".join(["abcdefgh"] * 29), 5, None]:
        with pytest.raises(schema.Invalid):
            targets_module.address(text, "address")


def test_a_bad_check_or_label_is_refused(config, tmp_path):
    for args, message in [
        (["--check", "tcp:70000"], "checks[0]: expected tcp:PORT with a port from 1 to 65535"),
        (["--check", "ftp://10.0.0.5/"], "checks[0]: expected a check: ping, tcp:PORT"),
        (["--check", "http://10.0.0.5/", "--check", "https://10.0.0.5/"], "checks[1]: expected at most one URL"),
        (["--label", "site=x"], "labels.site: expected a label name that sitewatch does not set itself"),
    ]:
        refused = targets("add", config, "10.0.0.5", "kassa-3", *args)
        assert refused.returncode == 1 and message in refused.stderr, refused.stderr
    assert not (tmp_path / "targets.yml").exists()


def test_targets_of_one_site_agree_on_labels_and_do_not_clash_with_its_checks(config):
    assert targets("add", config, "10.0.0.5", "kassa-3", "--site", "shop-9", "--client", "romashka").returncode == 0
    other = targets("add", config, "10.0.0.6", "kassa-4", "--site", "shop-9", "--client", "lutik")
    assert other.returncode == 1
    assert "site 'shop-9' has client='romashka' (from 'kassa-3'), not client='lutik'" in other.stderr
    config_site = targets("add", config, "10.0.0.6", "kassa-4", "--site", "lab", "--client", "lutik")
    assert config_site.returncode == 1
    assert "targets[1].labels.client: expected 'romashka', the value of site 'lab' in site.yml" in config_site.stderr
    clash = targets("add", config, "10.0.0.7", "web", "--site", "lab")
    assert clash.returncode == 1
    assert "site.yml sites[0].checks[0] is already named 'web'" in clash.stderr


def test_del_of_an_unknown_target_names_the_known_ones(config):
    assert targets("add", config, "10.0.0.5", "kassa-3").returncode == 0
    unknown = targets("del", config, "kassa-9")
    assert unknown.returncode == 1
    assert "no target named 'kassa-9' or with that id" in unknown.stderr
    assert f"known: kassa-3 ({sha_id('kassa-3')})" in unknown.stderr


def test_a_config_without_targets_file_is_told_to_name_one(tmp_path):
    plain = write_config(tmp_path / "plain.yml", "sites:\n  - id: a\n    checks: []\n")
    for command, args in [("add", ["10.0.0.5", "kassa-3"]), ("del", ["kassa-3"]), ("list", [])]:
        result = targets(command, plain, *args)
        assert result.returncode == 2
        assert "targets_file" in result.stderr and "add `targets_file: targets.yml` to the config" in result.stderr


def test_a_config_of_only_a_targets_file_is_valid_and_one_of_neither_is_not(tmp_path):
    only = write_config(tmp_path / "only.yml", "targets_file: devices.yml\nsites: []\n")
    assert load_config(only).sites == ()  # a missing targets file holds no targets
    with pytest.raises(ConfigError, match=r"sites: expected a value \(this key is required\)"):
        load_config(write_config(tmp_path / "neither.yml", "defaults: {interval: 30s}\n"))


def test_hand_edits_are_kept_and_a_missing_id_filled_in(config, tmp_path):
    (tmp_path / "targets.yml").write_text("targets:\n  - {name: hand-made, address: 10.0.0.9, checks: ['tcp:22']}\n",
                                          encoding="utf-8")
    assert targets("add", config, "10.0.0.5", "kassa-3").returncode == 0
    loaded = TargetsFile(tmp_path / "targets.yml").load()
    assert [(t.id, t.name, t.checks) for t in loaded] == [(sha_id("hand-made"), "hand-made", ("tcp:22",)),
                                                           (sha_id("kassa-3"), "kassa-3", ("ping",))]
    assert f"id: {sha_id('hand-made')}" in (tmp_path / "targets.yml").read_text(encoding="utf-8")


CONCURRENT_ADDS = """
import sys
from exporter.config.loader import open_targets
targets = open_targets(sys.argv[1])
for i in range(25):
    targets.add(f"10.{sys.argv[2]}.0.{i + 1}", f"dev-{sys.argv[2]}-{i}", ["tcp:22"])
"""


def test_concurrent_adds_from_two_processes_all_land_in_a_valid_file(config, tmp_path):
    processes = [subprocess.Popen([sys.executable, "-c", CONCURRENT_ADDS, str(config), str(n)], cwd=ROOT,
                                  stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    try:
        for process in processes:
            _, errors = process.communicate(timeout=60)
            assert process.returncode == 0, errors
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    names = {t.name for t in TargetsFile(tmp_path / "targets.yml").load()}
    assert names == {f"dev-{n}-{i}" for n in (1, 2) for i in range(25)}
    assert len(load_config(config).checks()) == 51
    assert not list(tmp_path.glob(".targets.yml.*.tmp"))  # no temporary file left behind


# --- the running exporter ------------------------------------------------------------------------------


def check_metric(exporter, name: str, check: str) -> float | None:
    return value_of_metric(exporter.metrics(), name, check=check)


def test_a_running_exporter_picks_up_added_targets_keeps_unchanged_ones_and_drops_deleted_ones(
        config, start_exporter, listening_port):
    steady = f"steady-tcp{listening_port}"
    assert targets("add", config, "127.0.0.1", "steady", "--site", "lab", "--check",
                   f"tcp:{listening_port}").returncode == 0
    exporter = start_exporter(config)
    runs_before = wait_until(lambda: (check_metric(exporter, "sitewatch_check_runs_total", steady) or 0) >= 2
                             and check_metric(exporter, "sitewatch_check_runs_total", steady), 10,
                             what="two runs of the steady target")

    added_at = time.monotonic()
    assert targets("add", config, "127.0.0.1", "kassa-1").returncode == 0
    # The new check's counters appear the moment the exporter reloads; the steady one's must not restart.
    wait_until(lambda: check_metric(exporter, "sitewatch_check_runs_total", "kassa-1") is not None, 8,
               interval=0.05, what="the exporter to reload the targets file")
    assert check_metric(exporter, "sitewatch_check_runs_total", steady) >= runs_before
    wait_until(lambda: check_metric(exporter, "sitewatch_check_up", "kassa-1") == 1, 15,
               what="the added target's first ping")
    assert time.monotonic() - added_at < 15
    assert value_of_metric(exporter.metrics(), "sitewatch_check_up", check="kassa-1", site="kassa-1") == 1
    assert "event=config_changed" in exporter.log_text()

    listed = targets("list", config, "--exporter", exporter.url)
    rows = {line.split()[1]: line for line in listed.stdout.splitlines()[1:]}
    assert rows["kassa-1"].endswith("UP") and rows["steady"].endswith("UP"), listed.stdout

    runs_before = check_metric(exporter, "sitewatch_check_runs_total", steady)
    assert targets("del", config, "kassa-1").returncode == 0
    wait_until(lambda: "kassa-1" not in exporter.metrics(), 8, what="the deleted target to vanish")
    assert check_metric(exporter, "sitewatch_check_runs_total", steady) >= runs_before
    assert value_of_metric(exporter.metrics(), "sitewatch_exporter_config_last_reload_successful") == 1


def test_a_malformed_targets_file_is_rejected_by_validate_and_by_a_running_exporter(
        config, tmp_path, start_exporter, listening_port):
    assert targets("add", config, "127.0.0.1", "steady", "--site", "lab", "--check",
                   f"tcp:{listening_port}").returncode == 0
    exporter = start_exporter(config)
    targets_file = tmp_path / "targets.yml"
    good = targets_file.read_text(encoding="utf-8")
    targets_file.write_text(good.replace("address: 127.0.0.1", "address: 999.1.1.1"), encoding="utf-8")

    validated = cli("validate", "--config", str(config))
    assert validated.returncode == 2
    assert (f"config error: {targets_file}: line 9: targets[0].address: expected an IPv4 or IPv6 address or a host name"
            in validated.stderr), validated.stderr
    listed = targets("list", config)
    assert listed.returncode == 2 and "targets[0].address" in listed.stderr

    wait_until(lambda: value_of_metric(exporter.metrics(), "sitewatch_exporter_config_last_reload_successful") == 0,
               8, what="the exporter to reject the targets file")
    time.sleep(2.5)  # one more look at the unchanged file must not log the rejection again
    rejections = [line for line in exporter.log_text().splitlines() if "event=reload_rejected" in line]
    assert len(rejections) == 1 and str(targets_file) in rejections[0] and "targets[0].address" in rejections[0]
    runs = check_metric(exporter, "sitewatch_check_runs_total", f"steady-tcp{listening_port}")
    assert runs is not None and runs >= 1  # the previous config keeps running

    targets_file.write_text(good, encoding="utf-8")
    wait_until(lambda: value_of_metric(exporter.metrics(), "sitewatch_exporter_config_last_reload_successful") == 1,
               8, what="the exporter to accept the repaired file")
    assert check_metric(exporter, "sitewatch_check_runs_total", f"steady-tcp{listening_port}") >= runs
