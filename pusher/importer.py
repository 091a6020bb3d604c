"""Pushes to a VictoriaMetrics-style import endpoint (``/api/v1/import/prometheus`` of VictoriaMetrics
itself, or of a ``vmagent`` that forwards by remote_write to any store).

The body is the same text exposition as a Pushgateway push, with every sample stamped with the push time
(a vmagent that queues through an outage delivers the samples at the time they describe). The site and
the job go in ``extra_label`` arguments, which the import endpoint writes over any label of the same name
in the body; an ingress in front can replace them with the site its credentials belong to.

Unlike a Pushgateway group, what a site stops sending is not removed: a series simply gets no new samples
and drops out of queries after the engine's look-back (five minutes by default).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pusher.transport import Transport


class ImportEndpoint(Transport):
    server = "the import endpoint"
    timestamps = True

    def __init__(self, settings: dict[str, Any]):
        super().__init__(settings, settings["import_url"])

    def push_url(self, site: str) -> str:
        labels = urlencode([("extra_label", f"job={self.job}"), ("extra_label", f"site={site}")])
        return self.url + ("&" if "?" in self.url else "?") + labels
