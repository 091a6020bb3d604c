"""The human page at ``/``: every site and check with its state, last run and reason."""

from __future__ import annotations

import html
import time

from exporter import __version__
from exporter.state import CheckState

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}td,th{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:left}
.ok{color:#17803d;font-weight:600}.fail{color:#c62828;font-weight:600}.down{background:#fdecea}
.pending{color:#888}small{color:#666}
"""


def _ago(timestamp: float, now: float) -> str:
    if not timestamp:
        return "never"
    seconds = max(0, int(now - timestamp))
    if seconds < 120:
        return f"{seconds}s ago"
    return f"{seconds // 60}m ago" if seconds < 7200 else f"{seconds // 3600}h ago"


def render(states: list[CheckState], config_file: str) -> str:
    now = time.time()
    by_site: dict[str, list[CheckState]] = {}
    for state in states:
        by_site.setdefault(state.check.site_id, []).append(state)
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='30'>"
             f"<title>sitewatch exporter</title><style>{_STYLE}</style></head><body>",
             f"<h1>sitewatch exporter</h1><p><small>version {e(__version__)} &middot; config {e(config_file)}"
             f" &middot; <a href='/metrics'>metrics</a></small></p>"]
    for site_id, site_states in by_site.items():
        labels = ", ".join(f"{k}={v}" for k, v in site_states[0].labels if k not in ("site", "check", "type"))
        parts.append(f"<h2>{e(site_id)}</h2><p><small>{e(labels)}</small></p>")
        parts.append("<table><tr><th>check</th><th>type</th><th>result</th><th>state</th><th>last run</th>"
                     "<th>figures</th><th>reason</th></tr>")
        for state in site_states:
            result = state.last
            row_class = "" if state.up else " class='down'"
            if result is None:
                verdict, figures, reason, last = "<span class='pending'>pending</span>", "", "", "not yet"
            else:
                verdict = "<span class='ok'>OK</span>" if result.success else "<span class='fail'>FAIL</span>"
                figures = e(result.figures)
                message = "<br>".join(e(line) for line in result.message.splitlines())
                reason = "" if result.success else f"<b>{e(result.reason or '')}</b>: {message}"
                last = e(_ago(result.finished_at, now))
            parts.append(f"<tr{row_class}><td>{e(state.check.name)}</td><td>{e(state.check.type)}</td>"
                         f"<td>{verdict}</td><td>{'up' if state.up else 'DOWN'}</td><td>{last}</td>"
                         f"<td>{figures}</td><td>{reason}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
