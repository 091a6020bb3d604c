"""Loads and validates a site exporter config; the one place a config file becomes a `Config`.

Nothing starts half-configured: any mistake raises `ConfigError` naming the file, the line, the path inside
it (``sites[1].checks[0].ping.count``) and what was expected. The targets file a config may name
(``targets_file:``, see exporter.targets) is read here too, and its targets become checks like written ones.

A `ConfigError` lists every mistake the file has (`problems`), so that `validate` shows them all at once:
every key of every site and check is checked. What depends on other parts (duplicate ids and names, the
targets file, maintenance windows naming checks, secrets) is checked once the parts are right. Lines are
looked up only when there is an error: a config that loads costs nothing more.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from zoneinfo import ZoneInfo

from exporter.checks.registry import CHECK_TYPES
from exporter import schema as s
from exporter.config import hours as h
from exporter.config.model import CheckConfig, Config, Schedule, Site
from exporter.config.push import PUSH, RELAY
from exporter.config.yamllines import Lines
from exporter.config.yamlfile import YamlError, parse_yaml, read_text
from exporter.secrets import KeySource, SecretError, SecretValue, secrets_in

if TYPE_CHECKING:  # exporter.targets imports this module's validators; it is imported where it is used
    from exporter.targets import Target, TargetsFile

log = logging.getLogger(__name__)

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
NAME_TEXT = "a name of letters, digits, '.', '_' or '-' (up to 63, starting with a letter or digit)"
LABEL_PATTERN = r"[a-zA-Z_][a-zA-Z0-9_]*"
# Labels sitewatch itself puts on series, or that Prometheus gives a meaning to.
RESERVED_LABELS = frozenset(
    {"site", "check", "type", "reason", "stat", "job", "instance", "le", "quantile", "catalog", "status",
     "kkt", "fn", "flag", "licence", "name", "version", "registration_number",
     # the labels of sitewatch_kkt_info and sitewatch_fn_log_mismatch
     "vendor", "model", "firmware", "rnm", "inn", "organization", "ofd", "ffd", "log_fn",
     # the labels of the opening hours' and maintenance windows' series
     "hours", "span", "window", "occurrence"}
)


@dataclass(frozen=True)
class Problem:
    """One mistake in a config file: `str()` is ``site.yml: line 14: sites[0].id: expected ...``."""

    file: str
    line: int | None  # 1-based; None when the place is not known
    text: str  # the path and what was expected, or what is wrong with the file
    column: int | None = None

    @property
    def where(self) -> str:
        """``line 14: ``, ``line 4, column 3: `` or nothing."""
        if self.line is None:
            return ""
        return f"line {self.line}, column {self.column}: " if self.column else f"line {self.line}: "

    def __str__(self) -> str:
        return f"{self.file}: {self.where}{self.text}"


class ConfigError(Exception):
    """A config file cannot be used. `problems` lists every mistake found, in the order of the file;
    `str()` is one line: the first in full (file, line, path, expectation) and how many more there are."""

    def __init__(self, file: Path | str, detail: str, *, line: int | None = None, column: int | None = None,
                 more: Sequence[Problem] = ()):
        first = Problem(str(file), line, detail, column)
        self.problems: tuple[Problem, ...] = (first, *more)
        self.file = str(file)
        self.line = line
        self.detail = first.where + detail  # the message after the file's name
        self.more_text = f" (and {len(more)} more problem{'s' if len(more) > 1 else ''})" if more else ""
        super().__init__(f"{first}{self.more_text}")

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> ConfigError:
        first, *more = problems
        return cls(first.file, first.text, line=first.line, column=first.column, more=more)

    @classmethod
    def from_yaml(cls, file: Path | str, err: YamlError) -> ConfigError:
        return cls(file, err.problem, line=err.line, column=err.column)


def invalid_config(file: Path | str, found: s.Invalid, lines: Lines | str | None) -> ConfigError:
    """The ConfigError for what the validators found in `file`, each problem with its line in the file's
    text (`lines`, or the text itself; None when the values did not come from a file)."""
    if isinstance(lines, str):
        lines = Lines(lines)
    problems = [Problem(str(file), lines.of(problem.path) if lines else None, problem.describe())
                for problem in found.problems]
    return ConfigError.of(_in_file_order(problems))


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    """Each file's problems by line (the files in the order they were first named), unknown lines last."""
    files: dict[str, int] = {}
    for problem in problems:
        files.setdefault(problem.file, len(files))
    return sorted(problems, key=lambda problem: (files[problem.file],
                                                 problem.line if problem.line is not None else math.inf))


class _Found:
    """The problems found so far in a config (and the files it names), to be raised together."""

    def __init__(self, file: Path, lines: Lines):
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def add(self, found: s.Invalid) -> None:
        self.problems.extend(invalid_config(self.file, found, self.lines).problems)

    def add_error(self, err: ConfigError) -> None:
        self.problems.extend(err.problems)

    def raise_any(self) -> None:
        if self.problems:
            raise ConfigError.of(_in_file_order(self.problems)) from None

    def fail(self, found: s.Invalid) -> NoReturn:
        """Adds `found` and raises them all: what comes next depends on what was wrong."""
        self.add(found)
        raise ConfigError.of(_in_file_order(self.problems)) from None


def label_name(value: Any, path: str) -> str:
    name = s.string(LABEL_PATTERN, "a label name of letters, digits and '_' not starting with a digit")(value, path)
    if name.startswith("__") or name in RESERVED_LABELS:
        raise s.Invalid(path, "a label name that sitewatch does not set itself "
                              f"(not {', '.join(sorted(RESERVED_LABELS))}, nor starting with '__')", value)
    return name


def label_value(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise s.Invalid(path, "a label value (a string)", value)
    return str(value)


_SCHEDULE_FIELDS = {
    "interval": s.Field(s.duration(minimum=0.1, maximum=86400)),
    "timeout": s.Field(s.duration(minimum=0.05, maximum=3600)),
    "failure_threshold": s.Field(s.integer(1, 1000)),
    "success_threshold": s.Field(s.integer(1, 1000)),
    "jitter": s.Field(s.number(0, 0.5)),
}
BUILTIN_SCHEDULE = {"interval": 60.0, "timeout": 10.0, "failure_threshold": 3, "success_threshold": 2, "jitter": 0.1}

_defaults = s.struct(_SCHEDULE_FIELDS)
_labels = s.mapping_of(label_name, label_value, what="a mapping of label names to values")
_name = s.string(NAME_PATTERN, NAME_TEXT)

_TOP = s.struct({
    "defaults": s.Field(_defaults),
    "hours": s.Field(lambda v, p: v),
    "hours_file": s.Field(s.file_path("a path to a YAML file of shared opening hours, by name")),
    "key_file": s.Field(s.file_path("a path to the key file for enc: values")),
    "push": s.Field(PUSH),
    "sites": s.Field(s.list_of(lambda v, p: v, what="a list of sites")),
    "targets_file": s.Field(s.file_path("a path to the targets file that `sitewatch-exporter targets` manages")),
})
# The top-level keys the sites are checked with: while one is wrong, the sites' own mistakes are not looked for.
_SITES_NEED = frozenset({"defaults", "hours", "hours_file", "sites", "targets_file"})
_SITE = s.struct({
    "id": s.Field(_name, required=True),
    "labels": s.Field(_labels, default={}),
    "timezone": s.Field(s.timezone()),
    "defaults": s.Field(_defaults),
    "relay": s.Field(RELAY, default=[]),
    "hours": s.Field(lambda v, p: v),
    "maintenance": s.Field(lambda v, p: v),
    "checks": s.Field(s.list_of(lambda v, p: v, what="a list of checks"), required=True),
})


def load_config(path: str | os.PathLike[str], key_file: str | None = None, *,
                targets: list[Target] | None = None, read_secrets: bool = True) -> Config:
    """Reads, validates and resolves (secrets included) the config at `path`, with its targets file.

    `targets` stands in for the targets file's content (to check a change before it is written);
    `read_secrets=False` validates without reading the secrets' values (for tools run outside the service).
    Raises ConfigError and nothing else: whatever a file holds, the caller gets a message, not a traceback.
    """
    try:
        return _load(Path(path), key_file, targets, read_secrets)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(path, "expected a config of a reasonable nesting depth (checking it ran out of "
                                "stack)") from None
    except Exception as err:  # noqa: BLE001 - a validator's oversight must still reach the user as a message
        # The traceback helps whoever fixes the oversight; it stays at debug level, and the log filter masks
        # any secret in it.
        log.debug("event=config_check_failed file=%s", path, exc_info=True)
        raise ConfigError(path, f"expected a config sitewatch can check, but checking it failed with "
                                f"{type(err).__name__} (please report this with the file)") from None


def _load(file: Path, key_file: str | None, targets: list[Target] | None, read_secrets: bool) -> Config:
    try:
        text = read_text(file)
        raw = parse_yaml(text)
    except YamlError as err:
        raise ConfigError.from_yaml(file, err) from None
    lines = Lines(text)
    found = _Found(file, lines)
    secrets: list[SecretValue] = []
    folder = s.config_folder.set(file.parent)
    try:
        try:
            top = _TOP(raw, "")
        except s.Invalid as err:
            if err.partial is None or err.failed & _SITES_NEED:
                raise
            found.add(err)  # push: or key_file: is wrong; the sites are checked all the same
            top = err.partial
        if top["sites"] is None and top["targets_file"] is None:
            raise s.Invalid("sites", "a value (this key is required)", hint="or a targets_file")
        if not top["sites"] and top["targets_file"] is None:
            raise s.Invalid("sites", "a list of sites with at least 1 item(s)", top["sites"])
        if top["push"]:
            secrets.extend(secrets_in(top["push"]))
        base = _merge_schedule(BUILTIN_SCHEDULE, top["defaults"])
        shared = h.shared_hours(top["hours"], "hours", NAME_PATTERN, NAME_TEXT) if top["hours"] is not None else {}
        try:
            shared = _with_hours_file(file, top["hours_file"], shared)
        except ConfigError as err:  # a mistake in the hours file, named with its own lines
            found.add_error(err)
            found.raise_any()
        built = []
        for i, raw_site in enumerate(top["sites"] or []):
            try:
                built.append(_site(raw_site, f"sites[{i}]", base, secrets, shared))
            except s.Invalid as err:
                found.add(err)
        found.raise_any()
        sites = tuple(site for site, _ in built)
        _no_duplicates([site.id for site in sites], "sites[{}].id", "site id")
    except s.Invalid as err:
        found.fail(err)
    finally:
        s.config_folder.reset(folder)
    targets_file = _relative(file, top["targets_file"])
    if targets_file is not None:
        site_defaults = {site.id: defaults for site, defaults in built}
        sites = _with_targets(file, Path(targets_file), sites, site_defaults, base, targets)
    final = {site.id: site for site in sites}
    for i, (site, _) in enumerate(built):  # after the targets file: a window may name a check that came from it
        if site.hours is not None:
            checks = {check.name for check in final[site.id].checks}
            try:
                h.check_window_targets(site.hours, site.own_windows, checks, f"sites[{i}]")
            except s.Invalid as err:
                found.add(err)
    found.raise_any()
    if read_secrets:
        resolve_secrets(file, secrets, KeySource(key_file, _relative(file, top.get("key_file"))), lines=lines)
    return Config(source=file, sites=sites, push=top["push"],
                  targets_file=Path(targets_file) if targets_file else None,
                  hours_file=Path(_relative(file, top["hours_file"])) if top["hours_file"] else None)


def open_targets(path: str | os.PathLike[str], key_file: str | None = None) -> TargetsFile:
    """The targets file the config at `path` names, set to refuse a change the config would then reject.

    Raises ConfigError when the config is invalid or names no targets_file. Secrets are not read.
    """
    from exporter.targets import TargetsError, TargetsFile

    # targets=[]: the config alone is checked here; the targets file is read under the lock when changed.
    config = load_config(path, key_file, targets=[], read_secrets=False)
    if config.targets_file is None:
        raise ConfigError(path, "targets_file: expected the path of a targets file, as devices are added to one: "
                                "add `targets_file: targets.yml` to the config (relative to its folder)")

    def validate(candidate: list[Target]) -> None:
        try:
            load_config(path, key_file, targets=candidate, read_secrets=False)
        except ConfigError as err:
            raise TargetsError(err.detail + err.more_text, err.file) from None

    return TargetsFile(config.targets_file, validate)


def _with_targets(config_file: Path, targets_file: Path, sites: tuple[Site, ...],
                  site_defaults: dict[str, dict[str, Any]], base: dict[str, Any],
                  targets: list[Target] | None) -> tuple[Site, ...]:
    """The config's sites with the targets' checks: appended to a config site the target names, or in new
    sites made from the targets. Each check is built by `_check` from the dict a person would have written,
    so an unchanged target keeps its state across reloads as an unchanged written check does."""
    from exporter import targets as targets_module

    lines: Lines | None = None  # a list given to check before it is written has no lines
    try:
        if targets is None:
            targets, text = targets_module.TargetsFile(targets_file).load_with_text()
            lines = Lines(text)
        else:
            targets_module.check_all(targets)
    except targets_module.TargetsError as err:
        if err.problems:
            raise ConfigError.of(err.problems) from None
        raise ConfigError(err.file or targets_file, err.detail) from None
    except s.Invalid as err:
        raise invalid_config(targets_file, err, None) from None
    by_id = {site.id: site for site in sites}
    added: dict[str, list[CheckConfig]] = {}
    new_labels: dict[str, dict[str, str]] = {}
    try:
        for i, target in enumerate(targets):
            path = f"targets[{i}]"
            site = by_id.get(target.site_id)
            if site is not None:
                _agrees_with_site(config_file, target, site, path)
                defaults, timezone = site_defaults[site.id], site.timezone
                taken = {check.name: f"{config_file.name} {check.path}" for check in site.checks}
                for check_name in target.check_names():
                    if check_name in taken:
                        raise s.Invalid(f"{path}.name", f"a name whose checks are free in site {site.id!r} "
                                        f"({taken[check_name]} is already named {check_name!r})", target.name)
            else:
                defaults, timezone = base, None
                new_labels.setdefault(target.site_id, {}).update(target.labels)
            added.setdefault(target.site_id, []).extend(
                _check(raw, f"{path}.checks[{j}]", target.site_id, timezone, defaults, [])
                for j, raw in enumerate(target.raw_checks()))
    except s.Invalid as err:
        raise invalid_config(targets_file, err, lines) from None
    result = [dataclasses.replace(site, checks=site.checks + tuple(added.get(site.id, ()))) for site in sites]
    result.extend(Site(id=site_id, labels=tuple(sorted(labels.items())), timezone=None,
                       checks=tuple(added[site_id])) for site_id, labels in new_labels.items())
    return tuple(result)


def _with_hours_file(config_file: Path, hours_file: str | None, shared: dict[str, h.Hours]) -> dict[str, h.Hours]:
    """The shared hours of `hours_file` (a chain's hours, copied to every site's PC) beside the config's own.
    A mistake in that file is a ConfigError naming it."""
    if not hours_file:
        return shared
    path = Path(_relative(config_file, hours_file))
    text = ""
    try:
        text = read_text(path)
        from_file = h.shared_hours(parse_yaml(text), "", NAME_PATTERN, NAME_TEXT)
    except YamlError as err:
        raise ConfigError.from_yaml(path, err) from None
    except s.Invalid as err:
        raise invalid_config(path, err, text) from None
    for name in from_file:
        if name in shared:
            raise s.Invalid(f"hours.{name}", f"a name not already given in the hours_file {path.name}", name)
    return {**from_file, **shared}


def _agrees_with_site(config_file: Path, target: Target, site: Site, path: str) -> None:
    labels = dict(site.labels)
    for key, value in target.labels.items():
        if key not in labels:
            raise s.Invalid(f"{path}.labels.{key}", f"only labels site {site.id!r} has in {config_file.name} "
                            f"({', '.join(labels) or 'none'}): set {key} there", value)
        if labels[key] != value:
            raise s.Invalid(f"{path}.labels.{key}", f"{labels[key]!r}, the value of site {site.id!r} in "
                            f"{config_file.name}", value)


def resolve_secrets(file: Path, secrets: list[SecretValue], key_source: KeySource, *,
                    lines: Lines | None = None) -> None:
    """Reads every secret of a config file; those that cannot be read make one ConfigError naming each one's
    path (and line, given the file's `lines`)."""
    problems = []
    for secret in secrets:
        try:
            secret.resolve(file.parent, key_source)
        except SecretError as err:
            problems.append(Problem(str(file), lines.of(secret.path) if lines else None, f"{secret.path}: {err}"))
            continue
        if secret.kind == "plain":
            log.warning("event=plain_secret file=%s path=%s hint=%s", file, secret.path,
                        "write it as {env: NAME}, {file: path} or an enc: value from 'sitewatch-exporter encrypt'")
    if problems:
        raise ConfigError.of(_in_file_order(problems))


def _relative(config_file: Path, other: str | None) -> str | None:
    if not other:
        return None
    other_path = Path(other).expanduser()
    return str(other_path if other_path.is_absolute() else config_file.parent / other_path)


def _merge_schedule(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(base)
    for key, value in (override or {}).items():
        if value is not None:
            merged[key] = value
    return merged


def _site(raw: Any, path: str, base: dict[str, Any], secrets: list[SecretValue],
          shared: dict[str, h.Hours]) -> tuple[Site, dict[str, Any]]:
    """The site, and the schedule defaults its checks get. Raises one Invalid for all the site's mistakes."""
    found: list[s.Invalid] = []
    failed: frozenset[str] = frozenset()
    try:
        site = _SITE(raw, path)
    except s.Invalid as err:
        if err.partial is None or err.failed & {"defaults", "checks"}:
            raise
        found.append(err)  # its checks are still checked
        site, failed = err.partial, err.failed
    hours = None
    own_windows = 0
    if not failed & {"hours", "maintenance", "timezone"}:
        try:
            hours = h.site_hours(site["hours"], site["maintenance"], path, shared)
            if hours is not None and site["timezone"] is None:
                # The machine's zone is often not the site's (an office server, a container in UTC): hours
                # three hours off would alarm every night.
                raise s.Invalid(s.join(path, "timezone"), "the site's time zone, such as Europe/Moscow (required "
                                "with hours or maintenance: they are the site's local time)")
        except s.Invalid as err:
            found.append(err)
        # site_hours validated the list and put its windows last: counted here, not read again
        own_windows = len(site["maintenance"]) if site["maintenance"] else 0
    defaults = _merge_schedule(base, site["defaults"])
    checks = []
    for i, raw_check in enumerate(site["checks"]):
        try:
            checks.append(_check(raw_check, f"{path}.checks[{i}]", site["id"], site["timezone"], defaults, secrets))
        except s.Invalid as err:
            found.append(err)
    if found:
        raise s.Invalid.gather(found)
    _no_duplicates([check.name for check in checks], path + ".checks[{}].name", "check name in this site")
    labels = tuple(sorted(site["labels"].items()))
    return (Site(id=site["id"], labels=labels, timezone=site["timezone"], checks=tuple(checks),
                 relay=tuple(site["relay"]), hours=hours, own_windows=own_windows),
            defaults)


def _check(raw: Any, path: str, site_id: str, timezone: ZoneInfo | None, defaults: dict[str, Any],
           secrets: list[SecretValue]) -> CheckConfig:
    types = ", ".join(CHECK_TYPES)
    if not isinstance(raw, dict):
        raise s.Invalid(path, f"a check: a mapping with a name and one of {types}", raw)
    present = [key for key in raw if key in CHECK_TYPES]
    if len(present) != 1:
        expected = f"exactly one check type key ({types})"
        raise s.Invalid(path, expected, raw, hint=f"found {', '.join(present)}" if present else "")
    kind = CHECK_TYPES[present[0]]
    fields = {"name": s.Field(_name, required=True), kind.NAME: s.Field(lambda v, p: v, required=True)}
    fields.update(_SCHEDULE_FIELDS)
    options_path = s.join(path, kind.NAME)
    found: list[s.Invalid] = []
    try:
        common = s.struct(fields)(raw, path)
    except s.Invalid as err:
        found.append(err)
    try:  # the type's options are checked even when the check's own keys are wrong (an empty type key is one)
        if raw[kind.NAME] is not None:
            options = _collect_secrets(kind.OPTIONS, raw[kind.NAME], options_path, secrets)
    except s.Invalid as err:
        found.append(err)
    if found:
        raise s.Invalid.gather(found)
    # A check type may have its own interval (a till's port is shared: poll it hourly, not every minute);
    # it wins over the site's and top-level defaults, and a check's own `interval` wins over it.
    type_defaults = {"interval": getattr(kind, "DEFAULT_INTERVAL", None)}
    schedule = Schedule(**_merge_schedule(_merge_schedule(defaults, type_defaults),
                                          {k: common[k] for k in _SCHEDULE_FIELDS}))
    if schedule.timeout > schedule.interval and common["timeout"] is None:
        # An inherited timeout shrinks to a short interval, as Prometheus does with scrape_timeout.
        schedule = dataclasses.replace(schedule, timeout=schedule.interval)
    if schedule.timeout > schedule.interval:
        raise s.Invalid(s.join(path, "timeout"), f"a timeout no longer than the interval ({schedule.interval:g}s)",
                        schedule.timeout)
    if hasattr(kind, "validate"):
        kind.validate(options, schedule.timeout, path)
    return CheckConfig(site_id=site_id, name=common["name"], kind=kind, options=options,
                       schedule=schedule, path=path, raw=(raw, schedule, timezone), timezone=timezone)


def _collect_secrets(validator: s.Validator, raw: Any, path: str, secrets: list[SecretValue]) -> Any:
    value = validator(raw, path)
    secrets.extend(secrets_in(value))
    return value


def _no_duplicates(names: list[str], path_format: str, what: str) -> None:
    first: dict[str, int] = {}
    found = []
    for index, name in enumerate(names):
        if name in first:
            found.append(s.Invalid(path_format.format(index), f"a {what} not used before "
                                   f"({path_format.format(first[name])} already is {name!r})", name))
        else:
            first[name] = index
    if found:
        raise s.Invalid.gather(found)
