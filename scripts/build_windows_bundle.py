"""Builds dist/sitewatch-windows-<version>.zip: everything a Windows site needs to install the site agent offline.

The zip holds, at its root:
  - wheels/: the project's own wheel and every dependency as Windows wheels, 32- and 64-bit, for each Python
    version in PYTHON_VERSIONS, with wheels/requirements.txt pinning the versions it was built with;
  - every file of packaging/windows/ (the install script and its wrappers; install.ps1 is required);
  - examples/: the example configs that fit a till PC (POS_EXAMPLES);
  - the Russian install guide, docs/ru/установка-на-кассе.md, as guide-ru.txt.

pip runs against PyPI only (`--index-url`, default https://pypi.org/simple), never against a machine's own
pip configuration: no config file (PIP_CONFIG_FILE=os.devnull), no PIP_* variable, no constraints.

pip evaluates environment markers for the machine it runs on, whatever --platform says, so on Linux it
would leave out `tzdata; sys_platform == 'win32'`. Markers are therefore evaluated here, for each Windows
target, and what a target needs beyond what pip fetched is asked for by name in another round.

Each target is resolved within the versions chosen for the targets before it, so the bundle holds one
version of a project wherever PyPI allows (cryptography's newest releases have no 32-bit wheels: the
64-bit targets get the same, older release). The build then proves, for every target, that pip's resolver,
given wheels/ alone and no versions (`pip install --dry-run --no-index`), picks exactly the pinned ones, so
an install with or without requirements.txt gets the same; and that every requirement of that set,
markers evaluated for Windows, is among them. Any failure stops the build.

Run with the project's venv:  .venv/bin/python scripts/build_windows_bundle.py   (or: make bundle-windows)
"""

from __future__ import annotations

import argparse
import codecs
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INDEX_URL = "https://pypi.org/simple"
# Resolved in this order, each target within the versions of those before it where PyPI allows: the oldest
# Python and the 32-bit build, which have the fewest releases, set the versions the others share.
PLATFORMS = ("win32", "win_amd64")
PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
# A target of these Python versions is bundled only when PyPI has a wheel of every dependency for it (a
# new Python's wheels come out over months); the others are required.
OPTIONAL_PYTHON_VERSIONS = ("3.14",)
# The examples a technician starts from, by their name in the zip: the pusher behind NAT (commented in
# Russian for the technician) and the exporter on a till PC.
POS_EXAMPLES = {"pusher-site.yml": ROOT / "examples" / "windows" / "pusher-site.yml",
                "exporter-site.yml": ROOT / "examples" / "windows" / "exporter-site.yml",
                "pos-site.yml": ROOT / "examples" / "pos-site.yml"}
GUIDE = ROOT / "docs" / "ru" / "установка-на-кассе.md"
# An ASCII name in the zip: Explorer's zip folders on older Windows 10 builds show UTF-8 names garbled. A
# .txt with a byte order mark opens in Notepad with a double click and reads right in any Notepad.
GUIDE_NAME = "guide-ru.txt"
WINDOWS_FILES = ROOT / "packaging" / "windows"
# cmd.exe misreads labels and long lines of batch files with bare LF endings; Notepad before Windows 10 1809
# (LTSB 2016 is common on tills) shows a config with LF endings as one line.
CRLF_SUFFIXES = (".cmd", ".bat", ".yml", ".txt")
# Not copied into the build's scratch copy of the source tree.
SOURCE_IGNORED = (".git", ".venv", "dist", "build", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis",
                  "node_modules")
MAX_ROUNDS = 5  # a round asks pip for what markers added; two are enough for today's dependencies

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ImportError:  # pragma: no cover - the venv has it (pytest depends on it)
    sys.exit("build_windows_bundle: needs the 'packaging' library; run it with the project's venv (make venv)")


class BuildError(Exception):
    """The bundle cannot be built; the message says why and what was expected."""


@dataclass(frozen=True)
class Target:
    platform: str  # a wheel platform tag: win32 or win_amd64
    python: str  # "3.12"

    def __str__(self) -> str:
        return f"{self.platform} cp{self.python.replace('.', '')}"

    @property
    def bits(self) -> str:
        return "64-bit" if self.platform == "win_amd64" else "32-bit"

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values of CPython `python` on Windows 10 or 11 of this architecture."""
        return {
            "implementation_name": "cpython", "implementation_version": f"{self.python}.0",
            "os_name": "nt", "platform_python_implementation": "CPython", "platform_release": "10",
            "platform_system": "Windows", "platform_version": "10.0.19045",
            "python_full_version": f"{self.python}.0", "python_version": self.python, "sys_platform": "win32",
            # A 32-bit Python on 64-bit Windows says AMD64 too; no dependency tells the two apart by it.
            "platform_machine": "AMD64" if self.platform == "win_amd64" else "x86",
        }

    def pip_target_options(self) -> list[str]:
        return ["--only-binary=:all:", "--platform", self.platform, "--python-version", self.python,
                "--implementation", "cp"]


@dataclass
class Wheel:
    path: Path
    name: str  # as its metadata spells it
    version: str
    requires: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)

    @classmethod
    def read(cls, path: Path) -> "Wheel":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            if len(names) != 1:
                raise BuildError(f"{path.name}: expected one *.dist-info/METADATA in the wheel, found {len(names)}")
            metadata = email.parser.Parser().parsestr(archive.read(names[0]).decode("utf-8"))
        return cls(path, metadata["Name"], metadata["Version"], metadata.get_all("Requires-Dist") or [])


class Pip:
    """pip of this Python, blind to the machine's pip configuration, against one index."""

    def __init__(self, index_url: str):
        self.index_url = index_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        self.env["PIP_CONFIG_FILE"] = os.devnull  # no global, user or site pip.conf (find-links, constraints)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """Runs pip; a run that failed because the index could not be reached raises BuildError saying so
        (pip itself would go on to say only that no version satisfies the requirement)."""
        command = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "--no-input", *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            unreachable = re.search(r"^\s*(WARNING: Retrying .*|.*Could not fetch URL .*)$", output, re.M)
            if unreachable:
                raise BuildError(f"pip could not reach the package index {self.index_url}: {unreachable.group(1)}")
        return result

    def index_options(self) -> list[str]:
        return ["--index-url", self.index_url]


def requirement_text(requirement: Requirement) -> str:
    """The requirement without its marker: the marker was evaluated here, for the target, not by pip."""
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{requirement.name}{extras}{requirement.specifier}"


def applies(requirement: Requirement, environment: dict[str, str], extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras | {""})


@dataclass(frozen=True)
class Unmet:
    """A requirement that no wheel at hand satisfies."""

    requirement: Requirement
    wanted_by: str
    found: str | None  # the version at hand, or None when there is no wheel of that name

    def __str__(self) -> str:
        at_hand = f"the wheel is {self.found}" if self.found else "no wheel"
        return f"{requirement_text(self.requirement)} (wanted by {self.wanted_by}): {at_hand}"


def unmet_on_windows(roots: list[Requirement], wheels: dict[str, Wheel], target: Target) -> list[Unmet]:
    """The requirements, of `roots` and of every wheel they lead to, that no wheel among `wheels` satisfies,
    markers evaluated for `target`."""
    environment = target.marker_environment()
    unmet: list[Unmet] = []
    pending = [(requirement, "the project") for requirement in roots if applies(requirement, environment, frozenset())]
    seen: set[tuple[str, str]] = set()
    while pending:
        requirement, wanted_by = pending.pop()
        if (str(requirement), wanted_by) in seen:
            continue
        seen.add((str(requirement), wanted_by))
        wheel = wheels.get(canonicalize_name(requirement.name))
        if wheel is None or not requirement.specifier.contains(wheel.version, prereleases=True):
            unmet.append(Unmet(requirement, wanted_by, wheel.version if wheel else None))
            continue
        extras = frozenset(requirement.extras)
        for line in wheel.requires:
            dependency = Requirement(line)
            if applies(dependency, environment, extras):
                pending.append((dependency, f"{wheel.name} {wheel.version}"))
    return unmet


def wheels_in(folder: Path) -> dict[str, Wheel]:
    found: dict[str, Wheel] = {}
    for path in sorted(folder.glob("*.whl")):
        wheel = Wheel.read(path)
        found[wheel.key] = wheel
    return found


def build_own_wheel(pip: Pip, scratch: Path) -> Wheel:
    """The project's wheel, built from a copy of the source tree so the tree gets no build/ or egg-info."""
    source = scratch / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SOURCE_IGNORED), symlinks=True)
    out = scratch / "own"
    result = pip.run("wheel", "--no-deps", "--wheel-dir", str(out), *pip.index_options(), str(source))
    if result.returncode != 0:
        raise BuildError(f"pip wheel of {ROOT} failed:\n{tail(result)}")
    built = list(out.glob("*.whl"))
    if len(built) != 1:
        raise BuildError(f"pip wheel of {ROOT} made {len(built)} wheels, expected one: {[p.name for p in built]}")
    return Wheel.read(built[0])


class Unresolvable(Exception):
    """pip finds no set of wheels for a target (within the constraints given); the message is pip's reason."""


def resolve(pip: Pip, own: Wheel, target: Target, constraints: dict[str, str], folder: Path) -> dict[str, Wheel]:
    """Downloads into `folder` the wheels `target` needs, within `constraints` (name: version); returns them."""
    roots = [Requirement(line) for line in own.requires]
    environment = target.marker_environment()
    asked = [requirement_text(r) for r in roots if applies(r, environment, frozenset())]
    folder.parent.mkdir(parents=True, exist_ok=True)
    constraints_file = folder.parent / f"{folder.name}-constraints.txt"
    constraints_file.write_text("".join(f"{name}=={version}\n" for name, version in sorted(constraints.items())),
                                encoding="utf-8")
    for _ in range(MAX_ROUNDS):
        shutil.rmtree(folder, ignore_errors=True)
        result = pip.run("download", "--dest", str(folder), *target.pip_target_options(), *pip.index_options(),
                         "--constraint", str(constraints_file), *asked)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            for refusal in (r"No matching distribution found for .*", r"Cannot install .* conflicting dependencies\.?"):
                found = re.search(rf"^ERROR: ({refusal})$", output, re.M)
                if found:
                    raise Unresolvable(found.group(1).rstrip("."))
            raise BuildError(f"pip download for {target} failed:\n{tail(result)}")
        wheels = wheels_in(folder)
        unmet = unmet_on_windows(roots, wheels, target)
        if not unmet:
            return wheels
        # Requirements pip skipped because their markers are false on this machine: ask for them by name.
        added = [requirement_text(u.requirement) for u in unmet if requirement_text(u.requirement) not in asked]
        if not added:
            raise BuildError(f"{target}: the downloaded wheels do not satisfy:\n  " + "\n  ".join(map(str, unmet)))
        asked += sorted(set(added))
    raise BuildError(f"{target}: still missing requirements after {MAX_ROUNDS} rounds of pip download")


def resolve_shared(pip: Pip, own: Wheel, target: Target, resolved: dict[Target, dict[str, Wheel]],
                   folder: Path) -> dict[str, Wheel]:
    """Resolves `target` within the versions every target so far was given, so that the bundle holds one
    version of each project wherever PyPI allows it; failing that, within its own Python version's (the
    32-bit target's) versions alone. Raises Unresolvable with pip's reason when neither can be had."""
    everyone = {w.name: w.version for wheels in resolved.values() for w in wheels.values()}
    same_python = {w.name: w.version for t, wheels in resolved.items() if t.python == target.python
                   for w in wheels.values()}
    try:
        return resolve(pip, own, target, everyone, folder)
    except Unresolvable as err:
        if everyone == same_python:
            raise
        shared_failure = err
    wheels = resolve(pip, own, target, same_python, folder)
    print(f"{target}: cannot have the other targets' versions ({shared_failure}); resolved within Python "
          f"{target.python}'s own", flush=True)
    return wheels


def tail(result: subprocess.CompletedProcess, lines: int = 25) -> str:
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-lines:])


def pins_by_python(resolved: dict[Target, dict[str, Wheel]]) -> dict[str, dict[str, Wheel]]:
    """The versions of each Python version, shared by its 32- and 64-bit targets: a requirements file cannot
    tell a 32-bit Python on 64-bit Windows from a 64-bit one (both say platform_machine == "AMD64")."""
    pins: dict[str, dict[str, Wheel]] = {}
    for target, wheels in resolved.items():
        shared = pins.setdefault(target.python, {})
        for key, wheel in wheels.items():
            if key in shared and shared[key].version != wheel.version:
                raise BuildError(f"Python {target.python}: {wheel.name} resolved to {shared[key].version} for one "
                                 f"architecture and {wheel.version} for {target.bits}; expected one version")
            shared.setdefault(key, wheel)
    return pins


def requirements_text(own: Wheel, pins: dict[str, dict[str, Wheel]], targets: list[Target]) -> str:
    """wheels/requirements.txt: every version this bundle was built with, by Python version where they differ."""
    versions = sorted(pins, key=Version)
    lines = [
        "# The exact versions this bundle was built with and verified for; every wheel is in this folder.",
        "# Install offline:  python -m pip install --no-index --find-links <this folder> -r <this file>",
        "# Verified for: " + ", ".join(str(target) for target in targets),
        f"{own.name}=={own.version}",
    ]
    names = sorted({key for python in versions for key in pins[python]} - {own.key})
    for key in names:
        by_version: dict[str, list[str]] = {}
        for python in versions:
            if key in pins[python]:
                by_version.setdefault(pins[python][key].version, []).append(python)
        name = next(pins[p][key].name for p in versions if key in pins[p])
        if len(by_version) == 1 and sum(map(len, by_version.values())) == len(versions):
            lines.append(f"{name}=={next(iter(by_version))}")
            continue
        for version, pythons in by_version.items():
            marker = " or ".join(f'python_version == "{python}"' for python in pythons)
            lines.append(f"{name}=={version} ; {marker}")
    return "\n".join(lines) + "\n"


def verify(pip: Pip, own: Wheel, target: Target, pins: dict[str, Wheel], wheels_folder: Path, scratch: Path) -> int:
    """pip's resolver, given `wheels_folder` alone and no versions, installs exactly the pinned versions for
    `target` (so an install with or without requirements.txt gets the same), and that set holds everything
    the project needs there, markers evaluated for Windows. Returns how many packages it would install.

    The projects are named on the command line besides sitewatch because pip, on this machine, drops the
    requirements whose markers say Windows (tzdata)."""
    report = scratch / f"report-{target.platform}-{target.python}.json"
    names = [own.name] + sorted(w.name for k, w in pins.items() if k != own.key)
    result = pip.run("install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(wheels_folder),
                     *target.pip_target_options(), "--target", str(scratch / "never-written"),
                     "--report", str(report), "--quiet", *names)
    if result.returncode != 0:
        raise BuildError(f"{target}: pip cannot install the bundle from {wheels_folder} alone:\n{tail(result)}")
    chosen: dict[str, Wheel] = {}
    for item in json.loads(report.read_text(encoding="utf-8"))["install"]:
        metadata = item["metadata"]
        path = Path(item["download_info"]["url"].removeprefix("file://"))
        if path.parent.resolve() != wheels_folder.resolve():
            raise BuildError(f"{target}: pip chose {item['download_info']['url']}, outside {wheels_folder}")
        chosen[canonicalize_name(metadata["name"])] = Wheel(path, metadata["name"], metadata["version"],
                                                            metadata.get("requires_dist", []))
    differing = [f"{wheel.name} {wheel.version} (pinned: {pins[key].version if key in pins else 'not pinned'})"
                 for key, wheel in sorted(chosen.items()) if key not in pins or pins[key].version != wheel.version]
    if differing or len(chosen) != len(pins):
        raise BuildError(f"{target}: from wheels/ pip would install {', '.join(differing) or 'another set'} rather "
                         f"than the {len(pins)} pinned versions; the bundle must hold no newer wheel that fits")
    unmet = unmet_on_windows([Requirement(f"{own.name}=={own.version}")], chosen, target)
    if unmet:
        raise BuildError(f"{target}: what pip would install from the bundle lacks, on Windows:\n  "
                         + "\n  ".join(map(str, unmet)))
    return len(chosen)


def collect_windows_files() -> list[tuple[Path, str]]:
    """Every file of packaging/windows/, for the zip's root, each checked to read on Windows as written."""
    if not (WINDOWS_FILES / "install.ps1").is_file():
        raise BuildError(f"{WINDOWS_FILES / 'install.ps1'} is missing: the bundle would have no install script")
    files = [(path, path.relative_to(WINDOWS_FILES).as_posix())
             for path in sorted(WINDOWS_FILES.rglob("*")) if path.is_file() and "__pycache__" not in path.parts]
    for path, name in files:
        data = path.read_bytes()
        first = next((i for i, byte in enumerate(data) if byte > 0x7F), None)
        if first is None:
            continue
        line = data[:first].count(b"\n") + 1
        if name.lower().endswith(".ps1") and not data.startswith(codecs.BOM_UTF8):
            raise BuildError(f"{path}: line {line}: non-ASCII text in a file without a UTF-8 byte order mark; "
                             f"Windows PowerShell 5.1 would read it in the ANSI code page: save it as UTF-8 with BOM")
        if name.lower().endswith(CRLF_SUFFIXES):
            raise BuildError(f"{path}: line {line}: non-ASCII text; cmd.exe reads batch files in the OEM code "
                             f"page: expected ASCII only")
    return files


def write_zip(zip_path: Path, members: list[tuple[Path, str]], texts: dict[str, str]) -> None:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_name(zip_path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source, name in members:
            data = source.read_bytes()
            if name.lower().endswith(CRLF_SUFFIXES):
                data = re.sub(rb"\r?\n", b"\r\n", data)
            archive.writestr(zip_member(name, source), data)
        for name, text in texts.items():
            archive.writestr(zip_member(name, None), text.replace("\n", "\r\n").encode("utf-8"))
    partial.replace(zip_path)


def zip_member(name: str, source: Path | None) -> zipfile.ZipInfo:
    stamp = time.localtime(source.stat().st_mtime if source else time.time())[:6]
    info = zipfile.ZipInfo(name, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def build(dist: Path, index_url: str) -> Path:
    started = time.monotonic()
    pip = Pip(index_url)
    windows_files = collect_windows_files()  # before anything is downloaded: a missing installer fails at once
    with tempfile.TemporaryDirectory(prefix="sitewatch-bundle-") as scratch_name:
        scratch = Path(scratch_name)
        own = build_own_wheel(pip, scratch)
        print(f"built {own.path.name}", flush=True)
        resolved: dict[Target, dict[str, Wheel]] = {}
        left_out: list[str] = []
        for python in PYTHON_VERSIONS:
            for platform in PLATFORMS:
                target = Target(platform, python)
                try:
                    wheels = resolve_shared(pip, own, target, resolved, scratch / "targets" / f"{platform}-{python}")
                except Unresolvable as err:
                    if python not in OPTIONAL_PYTHON_VERSIONS:
                        raise BuildError(f"{target}: {err}") from None
                    left_out.append(f"{target} ({err})")
                    print(f"left out {target}: {err}", flush=True)
                    continue
                resolved[target] = wheels
                print(f"resolved {target}: {len(wheels)} wheels", flush=True)
        pins = pins_by_python(resolved)

        wheels_folder = scratch / "bundle" / "wheels"
        wheels_folder.mkdir(parents=True)
        shutil.copy2(own.path, wheels_folder)
        for wheels in resolved.values():
            for wheel in wheels.values():
                if not (wheels_folder / wheel.path.name).exists():
                    shutil.copy2(wheel.path, wheels_folder)
        requirements = requirements_text(own, pins, list(resolved))

        verified = []
        for target in resolved:
            count = verify(pip, own, target, {own.key: own, **pins[target.python]}, wheels_folder, scratch)
            verified.append(f"{target} ({count} packages)")
            print(f"verified {target}: pip installs the {count} pinned packages from wheels/ alone", flush=True)

        members = [(path, f"wheels/{path.name}") for path in sorted(wheels_folder.glob("*.whl"))]
        members += windows_files
        for name, source in POS_EXAMPLES.items():
            if not source.is_file():
                raise BuildError(f"{source} is missing: the bundle's example configs come from examples/")
            members.append((source, f"examples/{name}"))
        texts = {"wheels/requirements.txt": requirements}
        if GUIDE.is_file():
            texts[GUIDE_NAME] = "\ufeff" + GUIDE.read_text(encoding="utf-8")
        else:
            print(f"warning: {GUIDE.relative_to(ROOT)} does not exist yet; the bundle has no install guide",
                  file=sys.stderr, flush=True)
        zip_path = dist / f"sitewatch-windows-{own.version}.zip"
        write_zip(zip_path, members, texts)

    wheel_count = sum(1 for _, name in members if name.endswith(".whl"))
    print(f"\n{zip_path}: {zip_path.stat().st_size / 2**20:.1f} MiB, {wheel_count} wheels, "
          f"built in {time.monotonic() - started:.0f} s")
    print("verified with pip install --dry-run --no-index --find-links wheels: " + "; ".join(verified))
    if left_out:
        print("left out, PyPI has no wheel for them: " + "; ".join(left_out))
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="folder for the zip (default: dist/)")
    parser.add_argument("--index-url", default=INDEX_URL, help=f"package index to download from (default: {INDEX_URL})")
    args = parser.parse_args(argv)
    try:
        build(args.dist.resolve(), args.index_url)
    except BuildError as err:
        print(f"build_windows_bundle: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
