"""The ``push:`` section of a site config: where and how ``sitewatch-pusher`` delivers a site's metrics.

It lives in the same file as the checks, so one file describes a site whether the office scrapes it or
it pushes through NAT; the exporter validates the section and leaves it to the pusher.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from exporter import schema as s
from exporter.httpclient import TLS_OPTIONS


def http_url(what: str) -> s.Validator:
    def check(value: Any, path: str) -> str:
        text = s.string(what=what)(value, path)
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise s.Invalid(path, what, value)
        if parts.password:
            raise s.Invalid(path, f"{what} without a password in it (use basic_auth with a secret)",
                            "a URL with a password")
        return text.rstrip("/") if parts.path in ("", "/") else text

    return check


_FIELDS = s.struct({
    "gateway": s.Field(http_url("the Pushgateway's URL, such as https://pgw.example.ru:9091")),
    "import_url": s.Field(http_url("the URL of a VictoriaMetrics-style import endpoint, such as "
                                   "https://vm.example.ru:8428/api/v1/import/prometheus")),
    "job": s.Field(s.string(r"[a-zA-Z_][a-zA-Z0-9_]*", "a job name of letters, digits and '_'"),
                   default="sitewatch"),
    "interval": s.Field(s.duration(minimum=5, maximum=86400), default=60.0),
    "timeout": s.Field(s.duration(minimum=0.5, maximum=300), default=10.0),
    "basic_auth": s.Field(s.struct({
        "username": s.Field(s.string(), required=True),
        "password": s.Field(s.secret(), required=True),
    })),
    "bearer_token": s.Field(s.secret()),
    "tls": TLS_OPTIONS,
    "proxy": s.Field(http_url("a proxy URL such as http://proxy.local:3128")),
})


def _one_destination(raw: Any, path: str) -> dict[str, Any]:
    section = _FIELDS(raw, path)
    if section["gateway"] and section["import_url"]:
        raise s.Invalid(s.join(path, "import_url"), "either gateway (a Pushgateway) or import_url, not both",
                        section["import_url"])
    if not section["gateway"] and not section["import_url"]:
        raise s.Invalid(s.join(path, "gateway"), "a value: where to push, gateway (a Pushgateway's URL) or "
                        "import_url (a VictoriaMetrics-style import endpoint)")
    return section


PUSH = _one_destination

RELAY = s.list_of(http_url("the URL of a metrics page to relay, such as http://127.0.0.1:9182/metrics"),
                  what="a list of metrics page URLs")
