"""Pushes to a Prometheus Pushgateway: PUT a site's group (vanished series go with it), or DELETE it.

The samples carry no timestamps (the Pushgateway refuses them): Prometheus stamps them when it scrapes.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from pusher.transport import CONTENT_TYPE, PushOutcome, Transport

__all__ = ["CONTENT_TYPE", "Gateway", "PushOutcome", "group_path"]


def group_path(job: str, site: str) -> str:
    """`/metrics/job/<job>/site/<id>`; values with a `/` go base64-encoded, as the Pushgateway expects."""
    def part(name: str, value: str) -> str:
        if "/" in value or not value:
            encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
            return f"/{name}@base64/{encoded}"
        return f"/{name}/{quote(value, safe='')}"

    return "/metrics" + part("job", job) + part("site", site)


class Gateway(Transport):
    server = "the Pushgateway"
    method = "PUT"
    timestamps = False

    def __init__(self, settings: dict[str, Any]):
        super().__init__(settings, settings["gateway"])

    def push_url(self, site: str) -> str:
        return self.url + group_path(self.job, site)

    def delete(self, site: str, budget: float) -> PushOutcome:
        return self.send("DELETE", self.url + group_path(self.job, site), None, (), budget)
