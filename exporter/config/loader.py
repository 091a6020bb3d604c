"""Loads and validates a site exporter config; the one place a config file becomes a `Config`.

Nothing starts half-configured: any mistake raises `ConfigError` naming the file, the path inside it
(``sites[1].checks[0].ping.count``) and what was expected.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from exporter.checks.registry import CHECK_TYPES
from exporter import schema as s
from exporter.config.model import CheckConfig, Config, Schedule, Site
from exporter.config.push import PUSH, RELAY
from exporter.config.yamlfile import YamlError, read_yaml
from exporter.secrets import KeySource, SecretError, SecretValue, secrets_in

log = logging.getLogger(__name__)

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
NAME_TEXT = "a name of letters, digits, '.', '_' or '-' (up to 63, starting with a letter or digit)"
LABEL_PATTERN = r"[a-zA-Z_][a-zA-Z0-9_]*"
# Labels sitewatch itself puts on series, or that Prometheus gives a meaning to.
RESERVED_LABELS = frozenset(
    {"site", "check", "type", "reason", "stat", "job", "instance", "le", "quantile", "catalog", "status",
     "kkt", "fn", "flag", "licence", "name", "version", "registration_number",
     # the labels of sitewatch_kkt_info and sitewatch_fn_log_mismatch
     "vendor", "model", "firmware", "rnm", "inn", "organization", "ofd", "ffd", "log_fn"}
)


class ConfigError(Exception):
    """A config file cannot be used. `str()` is the whole message: file, path, expectation."""

    def __init__(self, file: Path | str, detail: str):
        self.file = str(file)
        self.detail = detail
        super().__init__(f"{file}: {detail}")


def _label_name(value: Any, path: str) -> str:
    name = s.string(LABEL_PATTERN, "a label name of letters, digits and '_' not starting with a digit")(value, path)
    if name.startswith("__") or name in RESERVED_LABELS:
        raise s.Invalid(path, "a label name that sitewatch does not set itself "
                              f"(not {', '.join(sorted(RESERVED_LABELS))}, nor starting with '__')", value)
    return name


def _label_value(value: Any, path: str) -> str:
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
_labels = s.mapping_of(_label_name, _label_value, what="a mapping of label names to values")
_name = s.string(NAME_PATTERN, NAME_TEXT)

_TOP = s.struct({
    "defaults": s.Field(_defaults),
    "key_file": s.Field(s.string(what="a path to the key file for enc: values")),
    "push": s.Field(PUSH),
    "sites": s.Field(s.list_of(lambda v, p: v, min_items=1, what="a list of sites"), required=True),
})
_SITE = s.struct({
    "id": s.Field(_name, required=True),
    "labels": s.Field(_labels, default={}),
    "timezone": s.Field(s.timezone()),
    "defaults": s.Field(_defaults),
    "relay": s.Field(RELAY, default=[]),
    "checks": s.Field(s.list_of(lambda v, p: v, what="a list of checks"), required=True),
})


def load_config(path: str | os.PathLike[str], key_file: str | None = None) -> Config:
    """Reads, validates and resolves (secrets included) the config at `path`."""
    file = Path(path)
    try:
        raw = read_yaml(file)
    except YamlError as err:
        raise ConfigError(file, str(err)) from None
    secrets: list[SecretValue] = []
    folder = s.config_folder.set(file.parent)
    try:
        top = _TOP(raw, "")
        if top["push"]:
            secrets.extend(secrets_in(top["push"]))
        base = _merge_schedule(BUILTIN_SCHEDULE, top["defaults"])
        sites = tuple(_site(raw_site, f"sites[{i}]", base, secrets) for i, raw_site in enumerate(top["sites"]))
        _no_duplicates([site.id for site in sites], "sites[{}].id", "site id")
    except s.Invalid as err:
        raise ConfigError(file, err.describe()) from None
    finally:
        s.config_folder.reset(folder)
    resolve_secrets(file, secrets, KeySource(key_file, _relative(file, top.get("key_file"))))
    return Config(source=file, sites=sites, push=top["push"])


def resolve_secrets(file: Path, secrets: list[SecretValue], key_source: KeySource) -> None:
    """Reads every secret of a config file; a secret that cannot be read is a ConfigError with its path."""
    for secret in secrets:
        try:
            secret.resolve(file.parent, key_source)
        except SecretError as err:
            raise ConfigError(file, f"{secret.path}: {err}") from None
        if secret.kind == "plain":
            log.warning("event=plain_secret file=%s path=%s hint=%s", file, secret.path,
                        "write it as {env: NAME}, {file: path} or an enc: value from 'sitewatch-exporter encrypt'")


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


def _site(raw: Any, path: str, base: dict[str, Any], secrets: list[SecretValue]) -> Site:
    site = _SITE(raw, path)
    defaults = _merge_schedule(base, site["defaults"])
    checks = tuple(
        _check(raw_check, f"{path}.checks[{i}]", site["id"], site["timezone"], defaults, secrets)
        for i, raw_check in enumerate(site["checks"])
    )
    _no_duplicates([check.name for check in checks], path + ".checks[{}].name", "check name in this site")
    labels = tuple(sorted(site["labels"].items()))
    return Site(id=site["id"], labels=labels, timezone=site["timezone"], checks=checks, relay=tuple(site["relay"]))


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
    common = s.struct(fields)(raw, path)
    options_path = s.join(path, kind.NAME)
    options = _collect_secrets(kind.OPTIONS, raw[kind.NAME], options_path, secrets)
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
    for index, name in enumerate(names):
        if name in first:
            raise s.Invalid(path_format.format(index), f"a {what} not used before "
                            f"({path_format.format(first[name])} already is {name!r})", name)
        first[name] = index
