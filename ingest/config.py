"""The ingest config: distributors (their smartstatus tokens and getad keys), sites (which client, register
or workstation is theirs), the two sources' settings, storage and limits.

It is read with the exporter's YAML reader and validators, so a mistake reads the same way (file, path,
what was expected), with the line added: ``ingest.yml: line 7: distributors.rogaikopita599.token:
expected a secret written as {env: NAME}, ...``. Secrets are the exporter's `SecretValue`s: never written
to a log, an error or a label. Nothing starts half-configured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from exporter import schema as s
from exporter.config import ConfigError
from exporter.config.loader import NAME_PATTERN, NAME_TEXT, label_name, label_value, resolve_secrets
from exporter.config.push import http_url
from exporter.config.yamlfile import YamlError, parse_yaml, read_text
from exporter.config.yamllines import line_of
from exporter.secrets import KeySource, SecretValue

SMARTSTATUS = "smartstatus"
GETAD = "getad"
SOURCES = (SMARTSTATUS, GETAD)
# The ingest's own series add `source`; a site may not set it as a label of its own.
OWN_LABELS = frozenset({"source"})
RESERVED_PATHS = frozenset({"/", "/index.html", "/metrics", "/-/healthy", "/-/ready", "/-/reload"})
DEFAULT_MAX_BODY = 8 * 1024 * 1024
GETAD_INTERVAL = 8 * 3600.0  # getad-service's validation_fn.interval as shipped


@dataclass(frozen=True)
class SourceSettings:
    """How one source's uploads are taken and judged."""

    name: str
    path: str  # the URL path it posts to
    silent_after: float  # seconds without an upload after which a site counts as silent
    failure_threshold: int
    success_threshold: int
    date_tolerance: float = 600.0  # smartstatus: a date: line older than this at arrival is not believed
    forget_after: float = 30 * 86400.0  # getad: a register not posted for this long is dropped


@dataclass(frozen=True)
class Distributor:
    name: str  # as smartstatus.bat's `dealer:` header names it
    token: SecretValue | None  # smartstatus' ?token=
    getad_api_key: SecretValue | None  # getad-service's X-API-Key for this distributor's sites
    labels: tuple[tuple[str, str], ...]
    timezone: ZoneInfo | None
    derive_sites: bool
    max_derived_sites: int
    path: str  # where it is written, for messages


@dataclass(frozen=True)
class SmartstatusBinding:
    client: str  # the <client>.status name its script uploads
    server: str | None  # the Кодекс server the script reads, for alert texts (the check's target)
    check: str


@dataclass(frozen=True)
class GetadBinding:
    api_key: SecretValue | None  # a key only this site's getad-services send: their posts are this site's
    serials: tuple[str, ...]
    hostnames: tuple[str, ...]
    url_rms: tuple[str, ...]  # normalised by `normal_rms_url`
    check: str


@dataclass(frozen=True)
class IngestSite:
    id: str
    distributor: str
    labels: tuple[tuple[str, str], ...]  # the distributor's, overridden by the site's own, sorted
    timezone: ZoneInfo | None
    smartstatus: SmartstatusBinding | None
    getad: GetadBinding | None
    path: str
    derived: bool = False  # made from an upload's client name, not written in the config

    def binding(self, source: str) -> SmartstatusBinding | GetadBinding | None:
        return self.smartstatus if source == SMARTSTATUS else self.getad


@dataclass(frozen=True)
class IngestConfig:
    source: Path
    storage_path: Path
    max_body: int
    smartstatus: SourceSettings
    getad: SourceSettings
    distributors: dict[str, Distributor]
    sites: tuple[IngestSite, ...]

    def settings(self, source: str) -> SourceSettings:
        return self.smartstatus if source == SMARTSTATUS else self.getad


def _label_name(value: Any, path: str) -> str:
    name = label_name(value, path)
    if name in OWN_LABELS:
        raise s.Invalid(path, "a label name that sitewatch-ingest does not set itself (not source)", value)
    return name


def _url_path(value: Any, path: str) -> str:
    text = s.string(what="a URL path such as /upload")(value, path)
    if not text.startswith("/") or any(c in text for c in "?# ") or text in RESERVED_PATHS:
        raise s.Invalid(path, "a URL path starting with / (no query), other than / and the /metrics and /-/ "
                              "endpoints", value)
    return text.rstrip("/") or text


def _client_name(value: Any, path: str) -> str:
    text = label_value(value, path).strip()
    if not text or len(text) > 200 or any(c in text for c in "/\\") or not text.isprintable():
        raise s.Invalid(path, "the client name as written in smartstatus.bat (its <client>.status file name "
                              "without .status)", value)
    return text


def normal_rms_url(text: str) -> str:
    """An iikoRMS address as one string however it is written: https://Host:443/resto/ = https://host/resto."""
    try:
        parts = urlsplit(text.strip())
    except ValueError:  # "http://[resto": not an address; kept as written, it matches only itself
        return text.strip()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def _rms_url(value: Any, path: str) -> str:
    return normal_rms_url(http_url("an iikoRMS address as getad writes it in url_rms, such as "
                                   "https://romashka.iiko.it:443/resto")(value, path))


_labels = s.mapping_of(_label_name, label_value, what="a mapping of label names to values")
_name = s.string(NAME_PATTERN, NAME_TEXT)
_text = s.string(what="a non-empty string")


def _thresholds(failures: int, successes: int) -> dict[str, s.Field]:
    return {"failure_threshold": s.Field(s.integer(1, 100), default=failures),
            "success_threshold": s.Field(s.integer(1, 100), default=successes)}


_SMARTSTATUS = s.struct({
    "path": s.Field(_url_path, default="/upload"),
    # Two 15-minute runs of smartstatus.bat and SMART's own 10 minutes of processing.
    "silent_after": s.Field(s.duration(minimum=60, maximum=30 * 86400), default=40 * 60.0),
    "date_tolerance": s.Field(s.duration(minimum=60, maximum=30 * 86400), default=600.0),
    # One upload that catches the server's nightly restart is not yet "server down".
    **_thresholds(2, 1),
})
_GETAD = s.struct({
    "path": s.Field(_url_path, default="/api/submit_json"),  # getad-db's: only the host in url_list changes
    "interval": s.Field(s.duration(minimum=60, maximum=30 * 86400), default=GETAD_INTERVAL),
    "silent_after": s.Field(s.duration(minimum=60, maximum=60 * 86400)),
    "forget_after": s.Field(s.duration(minimum=3600, maximum=400 * 86400), default=30 * 86400.0),
    **_thresholds(1, 1),
})
_DISTRIBUTOR = s.struct({
    "token": s.Field(s.secret()),
    "getad_api_key": s.Field(s.secret()),
    "labels": s.Field(_labels, default={}),
    "timezone": s.Field(s.timezone()),
    "derive_sites": s.Field(s.boolean(), default=False),
    "max_derived_sites": s.Field(s.integer(1, 100000), default=500),
})
_SITE = s.struct({
    "id": s.Field(_name, required=True),
    "distributor": s.Field(_text, required=True),
    "labels": s.Field(_labels, default={}),
    "timezone": s.Field(s.timezone()),
    "smartstatus": s.Field(s.struct({
        "client": s.Field(_client_name, required=True),
        "server": s.Field(http_url("the Кодекс server's address as in the script, such as http://10.0.0.5:8080")),
        "check": s.Field(_name, default="kodeks"),
    })),
    "getad": s.Field(s.struct({
        "api_key": s.Field(s.secret()),
        "serials": s.Field(s.one_or_list_of(_text), default=[]),
        "hostnames": s.Field(s.one_or_list_of(_text), default=[]),
        "url_rms": s.Field(s.one_or_list_of(_rms_url), default=[]),
        "check": s.Field(_name, default="getad"),
    })),
})
_TOP = s.struct({
    "key_file": s.Field(s.file_path(what="a path to the key file for enc: values")),
    "storage": s.Field(s.struct({
        "path": s.Field(s.file_path(what="a path for the SQLite file of the latest uploads"),
                        default="sitewatch-ingest.db"),
    })),
    "limits": s.Field(s.struct({
        "max_body": s.Field(s.size(minimum=1024), default=DEFAULT_MAX_BODY),
    })),
    SMARTSTATUS: s.Field(_SMARTSTATUS),
    GETAD: s.Field(_GETAD),
    "distributors": s.Field(s.mapping_of(_name, _DISTRIBUTOR, what="a mapping of distributor names (the dealer: "
                                                                   "of smartstatus.bat) to their settings"),
                            required=True),
    "sites": s.Field(s.list_of(lambda v, p: v, what="a list of sites"), default=[]),  # each checked by _site
})


def load_ingest_config(path: str | os.PathLike[str], key_file: str | None = None) -> IngestConfig:
    """Reads, validates and resolves (secrets included) the ingest config at `path`; raises ConfigError only."""
    try:
        return _load(Path(path), key_file)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(path, "expected a config of a reasonable nesting depth") from None
    except Exception as err:  # noqa: BLE001 - a validator's oversight must still reach the user as a message
        raise ConfigError(path, f"expected a config sitewatch-ingest can check, but checking it failed with "
                                f"{type(err).__name__} (please report this with the file)") from None


def _load(file: Path, key_file: str | None) -> IngestConfig:
    try:
        text = read_text(file)
        raw = parse_yaml(text)
    except YamlError as err:
        raise ConfigError(file, str(err)) from None
    folder = s.config_folder.set(file.parent)
    try:
        top = _TOP(raw, "")
        config = _build(file, top)
    except s.Invalid as err:
        raise ConfigError(file, _with_line(text, err.path, err.describe())) from None
    finally:
        s.config_folder.reset(folder)
    key_source = KeySource(key_file, str(_relative(file, top["key_file"])) if top["key_file"] else None)
    for secret in _secrets(config):
        try:
            resolve_secrets(file, [secret], key_source)
        except ConfigError as err:
            raise ConfigError(file, _with_line(text, secret.path, err.detail)) from None
    _no_shared_keys(file, text, config)
    return config


def _secrets(config: IngestConfig) -> list[SecretValue]:
    found = [secret for d in config.distributors.values() for secret in (d.token, d.getad_api_key)]
    found += [site.getad.api_key for site in config.sites if site.getad]
    return [secret for secret in found if secret is not None]


def _with_line(text: str, path: str, detail: str) -> str:
    line = line_of(text, path) if text else None
    return f"line {line}: {detail}" if line else detail


def _relative(file: Path, other: str) -> Path:
    other_path = Path(other).expanduser()
    return other_path if other_path.is_absolute() else file.parent / other_path


def _build(file: Path, top: dict[str, Any]) -> IngestConfig:
    distributors = {name: _distributor(name, options) for name, options in top["distributors"].items()}
    if not distributors:
        raise s.Invalid("distributors", "at least one distributor")
    _unique([name.casefold() for name in distributors], [f"distributors.{name}" for name in distributors],
            "distributor name (names are compared ignoring case)")
    sites = tuple(_site(raw, f"sites[{i}]", distributors) for i, raw in enumerate(top["sites"]))
    _unique([site.id for site in sites], [f"{site.path}.id" for site in sites], "site id")
    _unique([(site.distributor, site.smartstatus.client.casefold()) for site in sites if site.smartstatus],
            [f"{site.path}.smartstatus.client" for site in sites if site.smartstatus],
            "client of this distributor (client names are compared ignoring case)")
    for what, values in (("serials", lambda g: g.serials), ("hostnames", lambda g: [h.casefold() for h in g.hostnames]),
                         ("url_rms", lambda g: g.url_rms)):
        claimed = [(value, f"{site.path}.getad.{what}[{i}]") for site in sites if site.getad
                   for i, value in enumerate(values(site.getad))]
        _unique([value for value, _ in claimed], [where for _, where in claimed], f"value in {what} (each names "
                "one site's registers)")
    smartstatus = top[SMARTSTATUS] or _SMARTSTATUS(None, SMARTSTATUS)
    getad = top[GETAD] or _GETAD(None, GETAD)
    if smartstatus["path"] == getad["path"]:
        raise s.Invalid("getad.path", f"a path other than smartstatus.path ({smartstatus['path']})", getad["path"])
    storage = top["storage"] or {}
    limits = top["limits"] or {}
    return IngestConfig(
        source=file,
        storage_path=_relative(file, storage.get("path") or "sitewatch-ingest.db"),
        max_body=limits.get("max_body") or DEFAULT_MAX_BODY,
        smartstatus=SourceSettings(SMARTSTATUS, smartstatus["path"], smartstatus["silent_after"],
                                   smartstatus["failure_threshold"], smartstatus["success_threshold"],
                                   date_tolerance=smartstatus["date_tolerance"]),
        getad=SourceSettings(GETAD, getad["path"], getad["silent_after"] or 2 * getad["interval"],
                             getad["failure_threshold"], getad["success_threshold"],
                             forget_after=getad["forget_after"]),
        distributors=distributors,
        sites=sites,
    )


def _distributor(name: str, options: dict[str, Any]) -> Distributor:
    return Distributor(name=name, token=options["token"], getad_api_key=options["getad_api_key"],
                       labels=tuple(sorted(options["labels"].items())), timezone=options["timezone"],
                       derive_sites=options["derive_sites"], max_derived_sites=options["max_derived_sites"],
                       path=f"distributors.{name}")


def _site(raw: Any, path: str, distributors: dict[str, Distributor]) -> IngestSite:
    options = _SITE(raw, path)
    distributor = distributors.get(options["distributor"])
    if distributor is None:
        raise s.Invalid(s.join(path, "distributor"), f"one of the distributors ({', '.join(distributors)})",
                        options["distributor"])
    smartstatus, getad = options["smartstatus"], options["getad"]
    if smartstatus is None and getad is None:
        raise s.Invalid(path, "a site that takes smartstatus uploads, getad posts or both (a smartstatus or a "
                              "getad key)")
    if smartstatus is not None and distributor.token is None:
        raise s.Invalid(f"{distributor.path}.token", f"a value: site {options['id']!r} takes smartstatus uploads "
                                                     "from this distributor, which its scripts send as ?token=")
    if getad is not None:
        if getad["api_key"] is None and distributor.getad_api_key is None:
            raise s.Invalid(s.join(path, "getad.api_key"), f"a value, or {distributor.path}.getad_api_key: the "
                                                           "X-API-Key its getad-services send")
        if getad["api_key"] is None and not (getad["serials"] or getad["hostnames"] or getad["url_rms"]):
            raise s.Invalid(s.join(path, "getad"), "a way to tell this site's posts among the distributor's: "
                                                   "serials, hostnames or url_rms (or an api_key of its own)")
    if smartstatus is not None and getad is not None and smartstatus["check"] == getad["check"]:
        # The alert rules join a site's series by (site, check): two sources under one name would make every
        # such join many-to-many, and stop the rules for the whole fleet.
        raise s.Invalid(s.join(path, "getad.check"), f"a check name other than smartstatus's "
                                                     f"{smartstatus['check']!r}: each source is a check of its own")
    labels = {**dict(distributor.labels), **options["labels"]}
    return IngestSite(
        id=options["id"], distributor=distributor.name, labels=tuple(sorted(labels.items())),
        timezone=options["timezone"] or distributor.timezone,
        smartstatus=SmartstatusBinding(smartstatus["client"], smartstatus["server"], smartstatus["check"])
        if smartstatus else None,
        getad=GetadBinding(getad["api_key"], tuple(v.strip() for v in getad["serials"]),
                           tuple(v.strip() for v in getad["hostnames"]), tuple(getad["url_rms"]), getad["check"])
        if getad else None,
        path=path)


def _unique(values: list[Any], paths: list[str], what: str) -> None:
    first: dict[Any, str] = {}
    for value, path in zip(values, paths):
        if value in first:
            raise s.Invalid(path, f"a {what} not used before ({first[value]} already is it)")
        first[value] = path


def _no_shared_keys(file: Path, text: str, config: IngestConfig) -> None:
    """A getad key names whose posts these are: two owners of one key could not be told apart."""
    owners: dict[str, str] = {}
    keys = [(d.getad_api_key, f"{d.path}.getad_api_key") for d in config.distributors.values()]
    keys += [(site.getad.api_key, f"{site.path}.getad.api_key") for site in config.sites if site.getad]
    for key, path in keys:
        if key is None:
            continue
        plain = key.reveal()
        if plain in owners:
            raise ConfigError(file, _with_line(text, path, f"{path}: expected a key of its own (it is the same as "
                                                           f"{owners[plain]})"))
        owners[plain] = path
