"""The ingress config (ingress.yml): where nginx listens, what it proxies, limits, and where its files live.

Read and validated like the other sitewatch configs: a mistake names the file, the line, the path inside it
and what was expected, and nothing is rendered from a half-valid file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter import schema as s
from exporter.config import ConfigError
from exporter.config.loader import invalid_config
from exporter.config.yamlfile import YamlError, parse_yaml, read_text

OFFICE_APPS = ("prometheus", "alertmanager", "pushgateway", "grafana", "receiver")
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
_ADDRESS = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})")
_RATE = re.compile(r"(\d+)r/(s|m)")
# The ingest's upload paths: plain segments only, so nginx's exact match and the path rebuilt for the
# upstream are the same string (no encoding, no dot segments, no regex or nginx syntax).
_INGEST_PATH = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+")
INGEST_PATHS = ("/upload", "/api/submit_json")  # sitewatch-ingest's defaults: smartstatus.path, getad.path


def _address(what: str) -> s.Validator:
    expected = f"{what}: host:port, such as 0.0.0.0:9443 or 127.0.0.1:9091"

    def check(value: Any, path: str) -> str:
        match = _ADDRESS.fullmatch(value) if isinstance(value, str) else None
        if not match or not 1 <= int(match.group(1)) <= 65535:
            raise s.Invalid(path, expected, value)
        return value
    return check


def _rate(value: Any, path: str) -> str:
    text = s.string(what="a rate")(value, path)
    if not _RATE.fullmatch(text) or int(_RATE.fullmatch(text).group(1)) < 1:
        raise s.Invalid(path, "a request rate such as 30r/m or 2r/s", value)
    return text


def _ingest_path(value: Any, path: str) -> str:
    expected = ("a URL path such as /upload: '/' and letters, digits, '.', '_', '~' or '-' (the ingest config's "
                "smartstatus.path or getad.path)")
    text = s.string(what=expected)(value, path)
    if not _INGEST_PATH.fullmatch(text) or any(part in (".", "..") for part in text.split("/")):
        raise s.Invalid(path, expected, value)
    # An exact match wins over nginx's other locations: the push side's own paths would be open without a
    # credential, and the ingest's own pages (metrics, status page, reload) would be open to the internet.
    if text.startswith(("/metrics/job", "/api/v1/import", "/-/")) or text in ("/metrics", "/index.html"):
        raise s.Invalid(path, "an upload path, not the push side's own (/metrics/job/..., /api/v1/import...) nor "
                              "the ingest's /metrics, /index.html or /-/...", value)
    return text


@dataclass(frozen=True)
class OfficeApp:
    name: str
    listen: str
    upstream: str


@dataclass(frozen=True)
class IngressConfig:
    source: Path
    folder: Path  # nginx.conf, the credential files and the site map
    certificate: Path
    key: Path
    pid_file: Path
    log_folder: Path
    user: str | None
    push_listen: str
    max_body: int
    rate: str
    burst: int
    address_rate: str
    pushgateways: dict[str, str]  # name -> host:port; the first is where unsharded distributors go
    shards: dict[str, str]  # distributor -> pushgateway name
    import_endpoints: dict[str, str]  # name -> host:port of a VictoriaMetrics or vmagent; empty: no import path
    import_shards: dict[str, str]  # distributor -> import endpoint name
    office: tuple[OfficeApp, ...]
    # sitewatch-ingest behind the push side: None, no route. It checks the tools' tokens and keys itself.
    ingest_endpoint: str | None = None
    ingest_paths: tuple[str, ...] = INGEST_PATHS
    ingest_rate: str = "60r/m"
    ingest_burst: int = 60
    ingest_http_listen: str | None = None  # plain HTTP for the upload paths only; None: off

    @property
    def nginx_conf(self) -> Path:
        return self.folder / "nginx.conf"

    @property
    def push_credentials(self) -> Path:
        return self.folder / "push.htpasswd"

    @property
    def office_credentials(self) -> Path:
        return self.folder / "office.htpasswd"

    @property
    def site_map(self) -> Path:
        return self.folder / "sites.map"


_TOP = s.struct({
    "folder": s.Field(s.file_path(what="the folder for nginx.conf and the credential files"), required=True),
    "tls": s.Field(s.struct({
        "certificate": s.Field(s.string(what="the certificate file (PEM, with its chain)"), required=True),
        "key": s.Field(s.string(what="the private key file (PEM)"), required=True),
    }), required=True),
    "nginx": s.Field(s.struct({
        "pid_file": s.Field(s.string(what="nginx's pid file"), default="nginx.pid"),
        "log_folder": s.Field(s.string(what="a folder for nginx's logs"), default="logs"),
        "user": s.Field(s.string(what="the user nginx's workers run as (they read the credential files)")),
    })),
    "push": s.Field(s.struct({
        "listen": s.Field(_address("where sites push"), required=True),
        "max_body": s.Field(s.size(minimum=1024), default=2 * 1024 * 1024),
        "rate": s.Field(_rate, default="30r/m"),
        "burst": s.Field(s.integer(0, 10000), default=20),
        "address_rate": s.Field(_rate, default="10r/s"),
        "pushgateways": s.Field(s.mapping_of(s.string(NAME, "a name for the Pushgateway"),
                                             _address("a Pushgateway's address")), required=True),
        "shards": s.Field(s.mapping_of(s.string(NAME, "a distributor"), s.string(NAME, "a Pushgateway name")),
                          default={}),
        "import_endpoints": s.Field(s.mapping_of(s.string(NAME, "a name for the import endpoint"),
                                                 _address("a VictoriaMetrics or vmagent address")), default={}),
        "import_shards": s.Field(s.mapping_of(s.string(NAME, "a distributor"),
                                              s.string(NAME, "an import endpoint name")), default={}),
        "ingest_endpoint": s.Field(_address("sitewatch-ingest's address")),
        "ingest_paths": s.Field(s.list_of(_ingest_path, min_items=1, what="a list of URL paths"),
                                default=list(INGEST_PATHS)),
        "ingest_rate": s.Field(_rate, default="60r/m"),
        "ingest_burst": s.Field(s.integer(0, 10000), default=60),
        "ingest_http_listen": s.Field(_address("where smartstatus.bat and getad-service may upload in clear HTTP")),
    }), required=True),
    "office": s.Field(s.mapping_of(s.choice(*OFFICE_APPS), s.struct({
        "listen": s.Field(_address("where the office reaches it"), required=True),
        "upstream": s.Field(_address("the application's own address"), required=True),
    })), default={}),
})


def _check_shards(shards: dict[str, str], upstreams: dict[str, str], path: str, what: str, where: str) -> None:
    """Every distributor in `shards` names one of `upstreams` (a typo would send its sites elsewhere)."""
    for distributor, name in shards.items():
        if not upstreams:
            raise s.Invalid(f"{path}.{distributor}", f"one of the {what} in {where}, which lists none", name)
        if name not in upstreams:
            raise s.Invalid(f"{path}.{distributor}", f"one of the {what} in {where} ({', '.join(upstreams)})", name)


def _check_ingest(push: dict[str, Any], office: dict[str, Any]) -> None:
    paths = push["ingest_paths"]
    for index, path in enumerate(paths):
        if path in paths[:index]:
            raise s.Invalid(f"push.ingest_paths[{index}]", "a path not listed twice", path)
    listen = push["ingest_http_listen"]
    if listen is None:
        return
    if push["ingest_endpoint"] is None:
        raise s.Invalid("push.ingest_http_listen", "nothing without push.ingest_endpoint (it serves only the "
                                                   "ingest's upload paths)", listen)
    # nginx takes a port's TLS setting from any one of its servers: a shared port would be HTTPS for both.
    taken = {push["listen"].rsplit(":", 1)[1]: "push.listen"}
    taken.update({app["listen"].rsplit(":", 1)[1]: f"office.{name}.listen" for name, app in office.items()})
    port = listen.rsplit(":", 1)[1]
    if port in taken:
        raise s.Invalid("push.ingest_http_listen", f"a port of its own (port {port} is {taken[port]}'s, with TLS)",
                        listen)


def load_ingress_config(path: str | os.PathLike[str]) -> IngressConfig:
    file = Path(path)
    try:
        text = read_text(file)
        raw = parse_yaml(text)
    except YamlError as err:
        raise ConfigError.from_yaml(file, err) from None
    try:
        top = _TOP(raw, "")
        push = top["push"]
        if not push["pushgateways"]:
            raise s.Invalid("push.pushgateways", "at least one Pushgateway")
        _check_shards(push["shards"], push["pushgateways"], "push.shards", "Pushgateways", "push.pushgateways")
        _check_shards(push["import_shards"], push["import_endpoints"], "push.import_shards", "import endpoints",
                      "push.import_endpoints")
        _check_ingest(push, top["office"] or {})
    except s.Invalid as err:
        raise invalid_config(file, err, text) from None
    nginx = top["nginx"] or {}

    def here(value: str) -> Path:
        target = Path(value).expanduser()
        return target if target.is_absolute() else file.parent / target

    folder = here(top["folder"])
    return IngressConfig(
        source=file, folder=folder, certificate=here(top["tls"]["certificate"]), key=here(top["tls"]["key"]),
        pid_file=here(nginx.get("pid_file") or "nginx.pid"), log_folder=here(nginx.get("log_folder") or "logs"),
        user=nginx.get("user"), push_listen=push["listen"], max_body=push["max_body"], rate=push["rate"],
        burst=push["burst"], address_rate=push["address_rate"], pushgateways=dict(push["pushgateways"]),
        shards=dict(push["shards"]), import_endpoints=dict(push["import_endpoints"]),
        import_shards=dict(push["import_shards"]),
        office=tuple(OfficeApp(name, app["listen"], app["upstream"]) for name, app in (top["office"] or {}).items()),
        ingest_endpoint=push["ingest_endpoint"], ingest_paths=tuple(push["ingest_paths"]),
        ingest_rate=push["ingest_rate"], ingest_burst=push["ingest_burst"],
        ingest_http_listen=push["ingest_http_listen"])
