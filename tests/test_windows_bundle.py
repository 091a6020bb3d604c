"""The offline Windows bundle (`make bundle-windows`): built from PyPI, unpacked, installed offline into a
fresh Linux venv and run.

The Windows wheels cannot run here, but the bundle's pure-Python wheels (the project's own among them)
are the same files on every platform: the venv gets all of them from the bundle, and only the compiled
dependencies' Linux builds, at the versions the bundle pins, from a folder of their own. The build
downloads from PyPI through pip's usual cache; without PyPI the test fails and says so.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from packaging import tags as packaging_tags
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from conftest import ROOT
from scripts.build_windows_bundle import GUIDE, GUIDE_NAME, INDEX_URL, POS_EXAMPLES, Pip

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
WINDOWS_FILES = ROOT / "packaging" / "windows"
# The pairs every bundle must serve (3.14 is added when PyPI has all its wheels).
REQUIRED_PYTHONS = ("310", "311", "312", "313")
COMPILED = ("PyYAML", "cryptography", "bcrypt", "MarkupSafe", "cffi")  # have no pure-Python wheel


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> dict:
    """Builds the bundle once for this file: the zip, its unpacked folder, the build's output and time."""
    work = tmp_path_factory.mktemp("bundle")
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_windows_bundle.py"), "--dist", str(work)],
                            capture_output=True, text=True, timeout=600, cwd=work)
    seconds = time.monotonic() - started
    assert result.returncode == 0, (f"building the bundle failed; it downloads from PyPI ({INDEX_URL}): is it "
                                    f"reachable?\n{result.stdout}\n{result.stderr}")
    archive = work / f"sitewatch-windows-{VERSION}.zip"
    unpacked = work / "unpacked"
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
        opened.extractall(unpacked)
    print(f"bundle built in {seconds:.0f} s, {archive.stat().st_size / 2**20:.1f} MiB")
    return {"zip": archive, "names": names, "dir": unpacked, "output": result.stdout, "errors": result.stderr}


def pinned(requirements: Path, environment: dict[str, str] | None = None) -> dict[str, str]:
    """requirements.txt's pins whose markers hold for `environment` (marker values over this Python's):
    canonical name -> version."""
    pins = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                (version,) = [spec.version for spec in requirement.specifier if spec.operator == "=="]
                pins[canonicalize_name(requirement.name)] = version
    return pins


def test_the_zip_holds_the_installer_the_examples_and_wheels_for_every_windows_python(bundle):
    names = set(bundle["names"])
    assert (WINDOWS_FILES / "install.ps1").is_file(), "packaging/windows/install.ps1 is the bundle's installer"
    for path in WINDOWS_FILES.rglob("*"):
        if path.is_file():
            assert path.relative_to(WINDOWS_FILES).as_posix() in names, f"{path} is not at the zip's root"
    assert "install.ps1" in names
    assert {f"examples/{name}" for name in POS_EXAMPLES} <= names
    assert GUIDE.is_file() and GUIDE_NAME in names
    guide = (bundle["dir"] / GUIDE_NAME).read_bytes()
    assert guide.startswith(b"\xef\xbb\xbf") and "Установка агента sitewatch" in guide.decode("utf-8-sig")
    assert all(name.isascii() for name in names), [name for name in names if not name.isascii()]
    for name in names:
        if name.lower().endswith((".cmd", ".bat", ".yml", ".txt")):  # cmd.exe and old Notepads need CRLF
            data = (bundle["dir"] / name).read_bytes()
            assert b"\n" not in data.replace(b"\r\n", b""), f"{name} has bare LF line endings"

    wheels = [name.removeprefix("wheels/") for name in names if name.startswith("wheels/") and name.endswith(".whl")]
    assert f"sitewatch-{VERSION}-py3-none-any.whl" in wheels
    tags: dict[str, set] = {}
    for wheel in wheels:
        name, _, _, wheel_tags = parse_wheel_filename(wheel)
        tags.setdefault(name, set()).update(wheel_tags)
    assert not any(tag.platform.startswith(("linux", "manylinux", "musllinux", "macosx"))
                   for found in tags.values() for tag in found)
    # Every pinned project has a wheel a Windows CPython of each required version and architecture installs,
    # found here by the wheel tags alone (the build's own check asks pip).
    requirements_file = bundle["dir"] / "wheels" / "requirements.txt"
    for python in REQUIRED_PYTHONS:
        version = f"3.{python[1:]}"
        pins = pinned(requirements_file, {"python_version": version, "python_full_version": f"{version}.0",
                                          "sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"})
        assert "tzdata" in pins, "Windows has no time zone database of its own: tzdata must be in the bundle"
        assert {canonicalize_name(name) for name in COMPILED} <= set(pins)
        for platform in ("win32", "win_amd64"):
            installable = set(packaging_tags.cpython_tags((3, int(python[1:])), platforms=[platform]))
            installable |= set(packaging_tags.compatible_tags((3, int(python[1:])), f"cp{python}", [platform]))
            for project in pins:
                assert tags.get(project, set()) & installable, f"no {project} wheel for {platform} cp{python}"

    requirements = requirements_file.read_text(encoding="utf-8")
    assert re.search(rf"^sitewatch=={re.escape(VERSION)}$", requirements, re.M)
    for python in REQUIRED_PYTHONS:
        assert f"win32 cp{python}" in requirements and f"win_amd64 cp{python}" in requirements
    # The summary a person reads after `make bundle-windows`.
    output = bundle["output"]
    assert re.search(rf"sitewatch-windows-{re.escape(VERSION)}\.zip: \d+\.\d MiB, {len(wheels)} wheels", output)
    for python in REQUIRED_PYTHONS:
        for platform in ("win32", "win_amd64"):
            assert f"verified {platform} cp{python}: pip installs " in output


def test_the_bundle_installs_offline_and_runs(bundle, tmp_path):
    wheels = bundle["dir"] / "wheels"
    pins = pinned(wheels / "requirements.txt")
    compiled = sorted({parse_wheel_filename(p.name)[0] for p in wheels.glob("*.whl")}
                      - {parse_wheel_filename(p.name)[0] for p in wheels.glob("*-none-any.whl")})
    assert {canonicalize_name(name) for name in COMPILED} <= set(compiled)
    # Linux builds of the compiled dependencies, at the bundle's versions, and nothing else.
    linux = tmp_path / "linux-wheels"
    pip = Pip(INDEX_URL)
    download = pip.run("download", "--no-deps", "--only-binary=:all:", "--dest", str(linux), *pip.index_options(),
                       *[f"{name}=={pins[name]}" for name in compiled if name in pins])
    assert download.returncode == 0, f"PyPI ({INDEX_URL}) unreachable?\n{download.stdout}\n{download.stderr}"
    assert all(not name.endswith("-none-any.whl") for name in (p.name for p in linux.iterdir()))

    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "--isolated", "--disable-pip-version-check", "install",
                              "--no-index", "--find-links", str(wheels), "--find-links", str(linux), "sitewatch"],
                             capture_output=True, text=True, timeout=300, env=pip.env, cwd=tmp_path)
    assert install.returncode == 0, install.stdout + install.stderr
    listed = subprocess.run([str(python), "-m", "pip", "--isolated", "list", "--format=freeze"], capture_output=True,
                            text=True, timeout=60, env=pip.env).stdout
    installed = {canonicalize_name(name): version for name, version in
                 (line.split("==") for line in listed.split() if "==" in line)}
    for name, version in installed.items():
        if name not in ("pip", "setuptools"):
            assert pins.get(name) == version, f"{name} {version} installed, the bundle pins {pins.get(name)}"

    exporter = environment / "bin" / "sitewatch-exporter"
    shown = subprocess.run([str(exporter), "--version"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert shown.stdout.strip() == f"sitewatch-exporter {VERSION}", shown.stdout + shown.stderr
    # The technician's example reads the site's password from a file beside it.
    (bundle["dir"] / "examples" / "shop-101.password").write_text("example-secret-value\n", encoding="utf-8")
    for example, secrets in (("pos-site.yml", {}), ("pusher-site.yml", {}), ("exporter-site.yml", {})):
        config = bundle["dir"] / "examples" / example
        checked = subprocess.run([str(exporter), "validate", "--config", str(config)], capture_output=True, text=True,
                                 timeout=60, cwd=tmp_path, env={**pip.env, **secrets})
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert re.fullmatch(rf"{re.escape(str(config))}: valid, 1 site\(s\), \d+ check\(s\)\n", checked.stdout)
