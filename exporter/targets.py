"""The targets file: devices a central exporter checks, kept apart from the hand-written config.

``sitewatch-exporter targets add|del|list`` (and the receiver's Telegram commands) change it through
`TargetsFile`; the exporter names it with ``targets_file:`` and reloads it by itself when it changes. This
module owns the file's format and its safe editing: validation of every value, stable short ids, and changes
made under an exclusive lock (``<file>.lock``) by writing a temporary file and renaming it over the old one,
so a reader never sees half a file and two concurrent edits never lose one another.

What a target becomes in the exporter (which checks, in which site) is decided by the config loader, from
`Target.raw_checks()` and `Target.site_id`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from exporter import lockedfile
from exporter import schema as s
from exporter.config.loader import (NAME_PATTERN, NAME_TEXT, ConfigError, Problem, invalid_config, label_name,
                                   label_value)
from exporter.config.yamlfile import YamlError, parse_yaml, read_text

HEADER = """\
# Devices this exporter checks, managed by `sitewatch-exporter targets add|del|list`.
# Hand edits are kept (comments other than this header are not), and the running exporter reloads this
# file by itself within a few seconds. Each target: id (the first 6 hex digits of the sha256 of its name),
# name, address (IP address or host name), checks (ping | tcp:PORT | an http(s) URL), optional site
# (default: the target's name) and labels.
"""
LOCK_TIMEOUT = 30.0  # seconds to wait for another edit to finish before giving up
ADDRESS_TEXT = "an IPv4 or IPv6 address or a host name (RFC 1123), with no port, scheme or path"
CHECK_TEXT = "a check: ping, tcp:PORT (1-65535) or an http:// or https:// URL"

_NAME = re.compile(NAME_PATTERN)
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class TargetsError(Exception):
    """A targets file cannot be read, or a change to it is refused. `str()` is a message for the user;
    `problems` lists each mistake of a file that cannot be read, with its line (empty for a refused change)."""

    def __init__(self, detail: str, file: Path | str | None = None, problems: tuple[Problem, ...] = ()):
        self.file = str(file) if file is not None else None
        self.detail = detail
        self.problems = problems
        super().__init__(f"{file}: {detail}" if file is not None else detail)

    @classmethod
    def of(cls, err: ConfigError) -> TargetsError:
        return cls(err.detail + err.more_text, err.file, err.problems)


class UnknownTarget(TargetsError):
    """`remove` found no target of that name or id; `known` names the targets there are."""

    def __init__(self, detail: str, known: list[str]):
        super().__init__(detail)
        self.known = known


def target_id(name: str) -> str:
    """A target's id: stable (it depends only on the name) and short."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:6]


@dataclass(frozen=True)
class Target:
    id: str
    name: str
    address: str
    checks: tuple[str, ...] = ("ping",)
    site: str | None = None  # None: a site of its own, named like the target
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def site_id(self) -> str:
        return self.site or self.name

    def raw_checks(self) -> list[dict[str, Any]]:
        """The target's checks as they would be written in a config's ``checks:`` list."""
        result: list[dict[str, Any]] = []
        for check in self.checks:
            if check == "ping":
                result.append({"name": self.name, "ping": {"host": self.address}})
            elif check.startswith("tcp:"):
                port = int(check[4:])
                result.append({"name": f"{self.name}-tcp{port}", "tcp": {"host": self.address, "port": port}})
            else:
                result.append({"name": f"{self.name}-http", "http": {"url": check}})
        return result

    def check_names(self) -> tuple[str, ...]:
        return tuple(check["name"] for check in self.raw_checks())

    def describe(self) -> str:
        """``kassa-3 (id 3f9a1c): ping,tcp:3389 10.0.0.5``"""
        return f"{self.name} (id {self.id}): {','.join(self.checks)} {self.address}"

    def as_dict(self) -> dict[str, Any]:
        written: dict[str, Any] = {"id": self.id, "name": self.name, "address": self.address,
                                   "checks": list(self.checks)}
        if self.site:
            written["site"] = self.site
        if self.labels:
            written["labels"] = dict(self.labels)
        return written


# -- validation ---------------------------------------------------------------------------------------


def address(value: Any, path: str) -> str:
    """An IP address (returned in its normal form) or an RFC 1123 host name (returned in lower case)."""
    if not isinstance(value, str) or not value:
        raise s.Invalid(path, ADDRESS_TEXT, value)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.split(".")
    if (len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels)
            or labels[-1].isdigit()):
        raise s.Invalid(path, ADDRESS_TEXT, value, hint=_address_hint(value))
    return value.lower()


def _address_hint(text: str) -> str:
    if "://" in text or "/" in text:
        return "a URL or path: give the host as the address and the URL as a check"
    if any(char.isspace() for char in text):
        return "it contains a space"
    if re.fullmatch(r"[^:]+:\d+", text):
        return "a port: give the port as a check, tcp:PORT"
    if re.fullmatch(r"[\d.]+", text):
        return "not a valid IPv4 address"
    if len(text) > 253:
        return "longer than 253 characters"
    return ""


def check_spec(value: Any, path: str) -> str:
    """``ping``, ``tcp:PORT`` or an http(s) URL; ping and tcp are returned in lower case."""
    if not isinstance(value, str) or not value:
        raise s.Invalid(path, CHECK_TEXT, value)
    lowered = value.lower()
    if lowered == "ping":
        return "ping"
    if lowered.startswith("tcp:"):
        port = value[4:]
        # isascii: "²".isdigit() holds too; the length keeps int() clear of Python's 4,300-digit limit
        if not (port.isascii() and port.isdigit() and len(port) <= 5) or not 1 <= int(port) <= 65535:
            raise s.Invalid(path, "tcp:PORT with a port from 1 to 65535", value)
        return f"tcp:{int(port)}"
    if lowered.startswith(("http://", "https://")):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            raise s.Invalid(path, "an http:// or https:// URL with a host", value) from None
        if not parts.hostname:
            raise s.Invalid(path, "an http:// or https:// URL with a host", value)
        if parts.password:
            raise s.Invalid(path, "a URL without a password in it", "a URL with a password")
        return value
    raise s.Invalid(path, CHECK_TEXT, value)


_name = s.string(NAME_PATTERN, NAME_TEXT)
_labels = s.mapping_of(label_name, label_value, what="a mapping of label names to values")
_TARGET = s.struct({
    "id": s.Field(s.string(r"[0-9a-f]{6}", "a target id of 6 hex digits (quote it if it is all digits)")),
    "name": s.Field(_name, required=True),
    "address": s.Field(address, required=True),
    "checks": s.Field(s.list_of(check_spec, min_items=1, what="a list of checks (ping, tcp:PORT, URL)"),
                      default=["ping"]),
    "site": s.Field(_name),
    "labels": s.Field(_labels, default={}),
}, what="a target: a mapping with name, address and checks")
_FILE = s.struct({"targets": s.Field(s.list_of(lambda v, p: v, what="a list of targets"), default=[])},
                 what="a mapping with the key targets")


def _target(raw: Any, path: str) -> Target:
    fields = _TARGET(raw, path)
    expected_id = target_id(fields["name"])
    if fields["id"] is not None and fields["id"] != expected_id:
        raise s.Invalid(s.join(path, "id"), f"{expected_id}, the id of the name {fields['name']!r} (the first 6 "
                        "hex digits of its sha256; leave the id out to have it filled in)", fields["id"])
    checks = tuple(fields["checks"])
    for index, check in enumerate(checks):
        if check in checks[:index]:
            raise s.Invalid(s.join(path, f"checks[{index}]"), "a check not listed before in this target", check)
        if "://" in check and any("://" in other for other in checks[:index]):
            raise s.Invalid(s.join(path, f"checks[{index}]"), "at most one URL per target", check)
    target = Target(id=expected_id, name=fields["name"], address=fields["address"], checks=checks,
                    site=fields["site"], labels=dict(fields["labels"]))
    for check_name in target.check_names():
        if not _NAME.fullmatch(check_name):
            raise s.Invalid(s.join(path, "name"), f"a shorter name: the check name {check_name!r} made from it "
                            "must have at most 63 characters", fields["name"])
    return target


def parse(raw: Any) -> list[Target]:
    """The targets of a parsed targets file; raises `schema.Invalid` with the path inside it (for every
    target that is wrong; what must hold between targets is checked once each one is right)."""
    targets = []
    found = []
    for i, item in enumerate(_FILE(raw, "")["targets"]):
        try:
            targets.append(_target(item, f"targets[{i}]"))
        except s.Invalid as err:
            found.append(err)
    if found:
        raise s.Invalid.gather(found)
    check_all(targets)
    return targets


def check_all(targets: Sequence[Target]) -> None:
    """What must hold between targets: unique names and ids, distinct check names in a site, agreeing
    site labels. Raises `schema.Invalid` naming ``targets[i]``."""
    names: dict[str, int] = {}
    ids: dict[str, int] = {}
    checks: dict[tuple[str, str], int] = {}
    site_labels: dict[str, dict[str, tuple[str, int]]] = {}
    for i, target in enumerate(targets):
        path = f"targets[{i}]"
        if target.name in names:
            raise s.Invalid(f"{path}.name", f"a name not used before (targets[{names[target.name]}] already is "
                            f"{target.name!r})", target.name)
        if target.id in ids:
            j = ids[target.id]
            raise s.Invalid(f"{path}.name", f"a name with an id of its own: its id {target.id} is already that of "
                            f"targets[{j}] {targets[j].name!r} (the first 6 hex digits of the name's sha256); "
                            "choose another name", target.name)
        names[target.name] = ids[target.id] = i
        for check_name in target.check_names():
            key = (target.site_id, check_name)
            if key in checks:
                j = checks[key]
                raise s.Invalid(f"{path}.name", f"a name whose checks do not clash with those of targets[{j}] "
                                f"{targets[j].name!r}: both make a check {check_name!r} in site {target.site_id!r}",
                                target.name)
            checks[key] = i
        known = site_labels.setdefault(target.site_id, {})
        for key, value in target.labels.items():
            if key in known and known[key][0] != value:
                first, j = known[key]
                raise s.Invalid(f"{path}.labels.{key}", f"{first!r}, as targets[{j}] {targets[j].name!r} gives site "
                                f"{target.site_id!r} (the targets of one site agree on their labels)", value)
            known.setdefault(key, (value, i))


def make_target(address_text: str, name: str, checks: Sequence[str] = ("ping",), site: str | None = None,
                labels: dict[str, str] | None = None) -> Target:
    """A validated target from separate values, as a command line or a chat command gives them."""
    raw: dict[str, Any] = {"name": name, "address": address_text, "checks": list(checks)}
    if site:
        raw["site"] = site
    if labels:
        raw["labels"] = dict(labels)
    try:
        return _target(raw, "")
    except s.Invalid as err:
        raise TargetsError(err.describe()) from None


# -- the file -----------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)  # list items indented under their key


def render(targets: Sequence[Target]) -> str:
    """The text of a targets file holding `targets`."""
    body = yaml.dump({"targets": [target.as_dict() for target in targets]}, Dumper=_Dumper,
                     default_flow_style=None, sort_keys=False, allow_unicode=True, width=4096)
    return HEADER + body


class TargetsFile:
    """One targets file. `load` reads it; `add` and `remove` change it under the lock, atomically.

    `validate`, if given, is called with the whole list a change would write and may refuse it by raising
    `TargetsError` (the config loader uses it to check the targets against the config's own sites).
    """

    def __init__(self, path: str | os.PathLike[str], validate: Callable[[list[Target]], None] | None = None):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._validate = validate

    def load(self) -> list[Target]:
        """The targets in the file; a missing file holds none. Raises TargetsError naming file, line and path."""
        return self.load_with_text()[0]

    def load_with_text(self) -> tuple[list[Target], str]:
        """`load`, and the file's text, where later checks of the targets find the lines of their paths."""
        if not self.path.exists():
            return [], ""
        text = ""
        try:
            text = read_text(self.path)
            return parse(parse_yaml(text)), text
        except YamlError as err:
            raise TargetsError.of(ConfigError.from_yaml(self.path, err)) from None
        except s.Invalid as err:
            raise TargetsError.of(invalid_config(self.path, err, text)) from None

    def add(self, address: str, name: str, checks: Sequence[str] = ("ping",), site: str | None = None,
            labels: dict[str, str] | None = None) -> Target:
        """Adds a target; refuses a bad value, a name that exists, or an address already checked the same way."""
        target = make_target(address, name, checks, site, labels)
        with self._locked():
            targets = self.load()
            _refuse_clashes(target, targets)
            candidate = [*targets, target]
            try:
                check_all(candidate)
            except s.Invalid as err:
                raise TargetsError(err.describe()) from None
            if self._validate is not None:
                self._validate(candidate)
            self._write(candidate)
        return target

    def remove(self, name_or_id: str) -> Target:
        """Removes the target of that name, or else of that id; raises UnknownTarget if there is none."""
        with self._locked():
            targets = self.load()
            found = next((t for t in targets if t.name == name_or_id), None)
            if found is None:
                found = next((t for t in targets if t.id == name_or_id.lower()), None)
            if found is None:
                known = [f"{t.name} ({t.id})" for t in targets]
                raise UnknownTarget(f"no target named {name_or_id!r} or with that id in {self.path}; known: "
                                    f"{', '.join(known) if known else '(none)'}", known)
            self._write([t for t in targets if t is not found])
        return found

    # -- writing ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            with lockedfile.locked(self.path, LOCK_TIMEOUT):
                yield
        except lockedfile.EditError as err:
            raise TargetsError(str(err)) from None

    def _write(self, targets: Sequence[Target]) -> None:
        try:
            lockedfile.replace(self.path, render(targets))
        except lockedfile.EditError as err:
            raise TargetsError(str(err)) from None


def _refuse_clashes(target: Target, targets: Sequence[Target]) -> None:
    for other in targets:
        if other.name == target.name:
            raise TargetsError(f"a target named {target.name!r} already exists (id {other.id}, address "
                               f"{other.address})")
        if other.id == target.id:
            raise TargetsError(f"the id {target.id} of {target.name!r} is already the id of {other.name!r} (ids are "
                               "the first 6 hex digits of the name's sha256); choose another name")
        shared = [check for check in target.checks if check in other.checks]
        if other.address == target.address and shared:
            raise TargetsError(f"{target.address} is already checked by {other.name!r} (id {other.id}) with "
                               f"{', '.join(shared)}")
        if other.site_id == target.site_id:
            for key, value in target.labels.items():
                if key in other.labels and other.labels[key] != value:
                    raise TargetsError(f"site {target.site_id!r} has {key}={other.labels[key]!r} (from "
                                       f"{other.name!r}), not {key}={value!r}: the targets of one site agree on "
                                       "their labels")


