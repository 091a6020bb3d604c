"""The project's alert rules and Alertmanager routing with their waits shortened, for demos and tests.

Production waits are minutes (`for: 10m`, `group_wait: 30s`, a site is silent after 180 s); shown on a
screen or in a test they would take a quarter of an hour. Every wait is scaled by the same factor, so the
order the rules were written for still holds (PcUnreachable fires before the Кодекс alerts it inhibits).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

# The freshness gate every site rule carries: a site whose last push is older than this is "not reporting".
FRESHNESS_GATE = 'push_time_seconds{job="sitewatch"} > 180'
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> int:
    """Seconds in a Prometheus duration made of whole units: "90s", "10m", "1h30m"."""
    if not re.fullmatch(r"(?:\d+[smhd])+", duration):
        raise ValueError(f"unexpected duration {duration!r}")
    return sum(int(number) * _UNITS[unit] for number, unit in re.findall(r"(\d+)([smhd])", duration))


def compress_rules(sources: Path, target: Path, *, divisor: int, stale_after: int,
                   keep_firing_for: str) -> list[Path]:
    """Copies every rule file of `sources` into `target` with `for:` divided by `divisor` (at least 1 s),
    `keep_firing_for:` replaced and the freshness gate's 180 s made `stale_after` seconds."""
    written = []
    gates = 0
    for source in sorted(sources.glob("*.yml")):
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
        for group in document["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{max(1, seconds(rule['for']) // divisor)}s"
                if "keep_firing_for" in rule:
                    rule["keep_firing_for"] = keep_firing_for
                gates += rule["expr"].count(FRESHNESS_GATE)
                rule["expr"] = rule["expr"].replace(FRESHNESS_GATE,
                                                    FRESHNESS_GATE.replace("180", str(stale_after)))
        path = target / source.name
        path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
        written.append(path)
    if not gates:
        raise ValueError(f"{sources}: no freshness gate ({FRESHNESS_GATE}) found to shorten")
    return written


def compress_routing(document: dict, timings: dict[str, str]) -> dict:
    """Alertmanager's config `document` with every route's group_wait / group_interval / repeat_interval
    set from `timings`, and mute intervals dropped (a demo may well run at night)."""

    def shorten(route: dict) -> None:
        for key, value in timings.items():
            if key in route:
                route[key] = value
        route.pop("mute_time_intervals", None)
        for child in route.get("routes", []):
            shorten(child)

    shorten(document["route"])
    return document


def point_webhooks(document: dict, receiver_url: str, token_file: Path) -> int:
    """Sends every webhook of Alertmanager's config `document` to the receiver at `receiver_url`, with the
    bearer token read from `token_file`; returns how many webhooks there are."""
    count = 0
    for receiver in document["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            path = re.sub(r"^[a-z]+://[^/]+", "", webhook["url"])
            if not path.startswith("/alert/"):
                raise ValueError(f"webhook {webhook['url']!r} does not post to sitewatch-receiver's /alert/")
            webhook["url"] = receiver_url + path
            webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
            count += 1
    return count
