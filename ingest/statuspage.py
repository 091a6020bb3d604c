"""The human page at ``/``: every site with its sources, when each last uploaded, what it said, and the
latest refusals (in English, like the exporter's page)."""

from __future__ import annotations

import html
import time

from exporter import __version__
from ingest.config import SMARTSTATUS
from ingest.intake import Feed, Intake
from ingest.refusals import Refusals

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}td,th{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:left;
vertical-align:top}.ok{color:#17803d;font-weight:600}.fail{color:#c62828;font-weight:600}.pending{color:#888}
.silent{background:#fff4e5}td.detail{font-size:90%;color:#444}small{color:#666}
"""


def _ago(timestamp: float | None, now: float) -> str:
    if not timestamp:
        return "never"
    seconds = int(now - timestamp)
    if seconds < 0:
        return f"in {-seconds}s (the server's clock is ahead)"
    if seconds < 120:
        return f"{seconds}s ago"
    return f"{seconds // 60}m ago" if seconds < 7200 else f"{seconds // 3600}h ago"


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(timestamp)) if timestamp else ""


def render(intake: Intake, refusals: Refusals, config_file: str) -> str:
    now = time.time()
    e = html.escape
    by_site: dict[str, list[Feed]] = {}
    for feed in intake.feeds():
        by_site.setdefault(feed.site.id, []).append(feed)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='30'>"
             f"<title>sitewatch ingest</title><style>{_STYLE}</style></head><body>",
             f"<h1>sitewatch ingest</h1><p><small>version {e(__version__)} &middot; config {e(config_file)}"
             f" &middot; {len(by_site)} site(s) &middot; <a href='/metrics'>metrics</a></small></p>"]
    parts.append("<table><tr><th>site</th><th>source</th><th>from</th><th>last upload</th><th>result</th>"
                 "<th>what it said</th></tr>")
    for site_id in sorted(by_site):
        for feed in by_site[site_id]:
            parts.append(_row(feed, now))
    parts.append("</table>")
    rows = refusals.latest()
    if rows:
        parts.append("<h2>Refused uploads</h2><table><tr><th>source</th><th>reason</th><th>count</th>"
                     "<th>last</th><th>last detail</th></tr>")
        for source, reason, count, last_at, message in rows:
            parts.append(f"<tr><td>{e(source)}</td><td>{e(reason)}</td><td>{count}</td>"
                         f"<td>{e(_ago(last_at, now))}</td><td class='detail'>{e(message)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def _row(feed: Feed, now: float) -> str:
    e = html.escape
    site = feed.site
    labels = ", ".join(f"{k}={v}" for k, v in site.labels)
    last = feed.last_upload
    silent = last is None or now - last > feed.settings.silent_after
    result = feed.state.last
    if result is None:
        verdict, said = "<span class='pending'>no upload yet</span>", ""
    else:
        verdict = "<span class='ok'>OK</span>" if result.success else f"<span class='fail'>FAIL</span> " \
                                                                      f"<b>{e(result.reason or '')}</b>"
        lines = [result.figures] if result.figures else []
        lines += result.message.splitlines() + result.details
        said = "<br>".join(e(line) for line in lines)
    sender = _sender(feed)
    made = " (made from its client name)" if site.derived else ""
    return (f"<tr{' class=silent' if silent else ''}><td><b>{e(site.id)}</b><br><small>{e(labels)}{made}</small></td>"
            f"<td>{e(feed.source)}<br><small>check {e(feed.state.check.name)}</small></td><td>{sender}</td>"
            f"<td>{e(_ago(last, now))}<br><small>{e(_when(last))}{' &middot; silent' if silent else ''}</small>"
            f"</td><td>{verdict}</td><td class='detail'>{said}</td></tr>")


def _sender(feed: Feed) -> str:
    """Who sent the latest upload: the client file and dealer, or the getad files and their PC."""
    e = html.escape
    lines = []
    for upload in sorted(feed.uploads.values(), key=lambda u: u.upload_time, reverse=True)[:6]:
        meta = upload.meta
        text = str(meta.get("file_name") or upload.item)
        if meta.get("distributor"):
            text += f" · {'dealer' if upload.source == SMARTSTATUS else 'distributor'} {meta['distributor']}"
        if meta.get("hostname"):
            text += f" · host {meta['hostname']}"
        if meta.get("date_ignored"):
            text += " · its date: line was not believed (arrival used)"
        lines.append(e(text))
    return "<br>".join(lines) or "<small>—</small>"
