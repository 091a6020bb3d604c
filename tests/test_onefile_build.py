"""The one-file executables of the site agent (packaging/pyinstaller/sitewatch.spec), built here for Linux and
run the way a site runs them: copied into a folder of their own, with no Python, no venv and no system time
zone database in reach (PYTHONTZPATH names an empty folder, so the zones must come from the bundled tzdata).

`sitewatch-exporter check` reads a Mitsu register on a pty and the Кодекс simulator on loopback for a site
with opening hours; `sitewatch-pusher --once` pushes the same site to Debian's real Pushgateway.

PyInstaller (and tzdata, which pyproject installs on Windows only) come from the test extras when they are
there; otherwise they are installed for this test alone, into a folder of their own, from PyPI.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT, http_get, value_of_metric, write_config
from exporter.config import load_config
from exporter.hours import describe
from scripts.build_windows_bundle import INDEX_URL, Pip
from simulators.kodeks import PASSWORD, USERNAME, Catalog, FakeKodeksServer, Scenario
from simulators.mitsu import MitsuPtySimulator, MitsuScenario

SPEC = ROOT / "packaging" / "pyinstaller" / "sitewatch.spec"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
PROGRAMS = ("sitewatch-exporter", "sitewatch-pusher")
MOSCOW = ZoneInfo("Europe/Moscow")
BUILD_TOOLS = {"PyInstaller": "pyinstaller", "tzdata": "tzdata"}  # module: the package that brings it


@pytest.fixture(scope="module")
def executables(tmp_path_factory) -> Path:
    """Builds both executables with the spec and copies them into a folder of their own; returns it."""
    work = tmp_path_factory.mktemp("onefile")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    missing = [package for module, package in BUILD_TOOLS.items() if importlib.util.find_spec(module) is None]
    if missing:
        tools = work / "build-tools"
        pip = Pip(INDEX_URL)
        installed = pip.run("install", "--target", str(tools), *pip.index_options(), *missing)
        assert installed.returncode == 0, (f"installing {', '.join(missing)} from PyPI ({INDEX_URL}) failed: is it "
                                           f"reachable?\n{installed.stdout}\n{installed.stderr}")
        env["PYTHONPATH"] = str(tools)
    started = time.monotonic()
    built = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--distpath", str(work / "dist"),
                            "--workpath", str(work / "build"), str(SPEC)],
                           capture_output=True, text=True, timeout=600, cwd=work, env=env)
    seconds = time.monotonic() - started
    assert built.returncode == 0, built.stdout + built.stderr[-5000:]
    site = work / "site"
    site.mkdir()
    for program in PROGRAMS:
        shutil.copy2(work / "dist" / program, site / program)
    sizes = ", ".join(f"{p} {(site / p).stat().st_size / 2**20:.1f} MiB" for p in PROGRAMS)
    print(f"one-file build took {seconds:.0f} s: {sizes}")
    return site


@pytest.fixture
def clean_env(tmp_path) -> dict[str, str]:
    """What a service manager gives a program: a minimal PATH, no Python variables, and no time zone
    database (PYTHONTZPATH names an empty folder, so zoneinfo must read the bundled tzdata)."""
    empty = tmp_path / "no-zoneinfo"
    empty.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    return {"PATH": "/usr/bin:/bin", "PYTHONTZPATH": str(empty), "HOME": str(tmp_path), "TMPDIR": str(scratch),
            "KODEKS_PASSWORD": PASSWORD}


def run(executables: Path, program: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(executables / program), *args], capture_output=True, text=True, encoding="utf-8",
                          timeout=120, cwd=executables, env=env)


@pytest.fixture
def site_config(tmp_path):
    """A till PC's config against the simulators: a Mitsu register on a pty, the Кодекс server's main page
    and status page on loopback, and opening hours in Moscow time that close the site from two hours ago
    to two hours ahead. Returns (path, the opening's moment, the closing's moment)."""
    fn_expiry = (datetime.now(MOSCOW).date() + timedelta(days=40)).isoformat()
    kodeks = FakeKodeksServer(Scenario(catalogs=[Catalog("/docs")], licence_until="31.12.2036")).start()
    register = MitsuPtySimulator(MitsuScenario(fn_expiry=fn_expiry)).start()
    now = datetime.now(MOSCOW).replace(second=0, microsecond=0)
    opening, closing = now + timedelta(hours=2), now - timedelta(hours=2)

    def write(push: str = "") -> Path:
        return write_config(tmp_path / "site.yml", f"""{push}
sites:
  - id: cafe-lenina
    labels: {{client: kofeinya}}
    timezone: Europe/Moscow
    hours:
      open: {{daily: "{opening:%H:%M}-{closing:%H:%M}"}}
    checks:
      - name: kodeks-main-page
        http: {{url: "{kodeks.url}/docs", must_contain: "Техэксперт"}}
      - name: kodeks
        kodeks: {{url: "{kodeks.url}", username: {USERNAME}, password: {{env: KODEKS_PASSWORD}}}}
      - name: till-mitsu
        kkt: {{driver: mitsu, port: "{register.device}", serial: "065001234567890"}}
""")

    try:
        yield write, opening, closing
    finally:
        register.stop()
        kodeks.stop()


def test_the_executables_say_their_version_without_python_or_a_zone_database(executables, clean_env):
    for program in PROGRAMS:
        result = run(executables, program, "--version", env=clean_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{program} {VERSION}"


def test_check_reads_the_register_and_the_kodeks_server_in_the_sites_time_zone(executables, clean_env, site_config,
                                                                              monkeypatch):
    write, _, _ = site_config
    config = write()
    result = run(executables, "sitewatch-exporter", "check", "--config", str(config), env=clean_env)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for check, kind in (("kodeks-main-page", "http"), ("kodeks", "kodeks"), ("till-mitsu", "kkt")):
        assert re.search(rf"^cafe-lenina\s+{check}\s+{kind}\s+OK\s", out, re.M), out
    # The ФН's date is the register's (Moscow) date: 40 days from Moscow's today when the register was set
    # up (39 if a midnight has passed since).
    for text in ("MITSU-1-F", "№065001234567890", "ФН 9999078902014447"):
        assert text in out
    left = re.search(r"\(in (\d+) days\)", out)
    assert left and (left[1] == "40" or left[1] == "39" and datetime.now(MOSCOW).hour == 0), out
    assert "3 of 3 checks passed." in out
    # The hours, read in Moscow time from the bundled zone files, as this test's Python reads them from the system.
    monkeypatch.setenv("KODEKS_PASSWORD", PASSWORD)
    expected = describe(load_config(config).site("cafe-lenina").hours, MOSCOW, time.time())
    assert expected.startswith("closed by its hours until ")
    assert f"\ncafe-lenina: {expected}.\n" in out


def test_the_pusher_pushes_the_site_to_a_real_pushgateway(executables, clean_env, site_config, pushgateway):
    gateway = pushgateway()
    write, opening, closing = site_config
    config = write(push=f'push: {{gateway: "{gateway}"}}')
    result = run(executables, "sitewatch-pusher", "--config", str(config), "--once", env=clean_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(rf"cafe-lenina: pushed \d+ series to {re.escape(gateway)} in \d+ ms\n", result.stdout)
    status, page = http_get(gateway + "/metrics")
    assert status == 200
    for check in ("kodeks-main-page", "kodeks", "till-mitsu"):
        assert value_of_metric(page, "sitewatch_check_success", job="sitewatch", site="cafe-lenina",
                               check=check) == 1, check
    assert value_of_metric(page, "sitewatch_kkt_up", site="cafe-lenina", kkt="065001234567890") == 1
    # The current closure's moments: Moscow's clock times turned into unix time with the bundled zones (in
    # any other zone they would be hours off; other days' closures are whole days away).
    assert closing.timestamp() in values_of(page, "sitewatch_site_closed_start_timestamp_seconds", "cafe-lenina")
    assert opening.timestamp() in values_of(page, "sitewatch_site_closed_end_timestamp_seconds", "cafe-lenina")


def values_of(page: str, name: str, site: str) -> list[float]:
    return [float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
            if line.startswith(name + "{") and f'site="{site}"' in line]
