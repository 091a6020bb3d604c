"""``sitewatch-exporter check``: run every check once and print a table a technician can read, in English
or (``--lang ru``, ``$SITEWATCH_LANG``) in Russian; the JSON form is the same in both."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import TextIO

from exporter import oneshot_ru
from exporter.checks.base import Result
from exporter.config import CheckConfig, Config
from exporter.hours import describe
from exporter.httpclient import HttpClient
from exporter.icmp.engine import PingEngine
from exporter.runner import run_once


async def _run_all(checks: list[CheckConfig], engine: PingEngine, http: HttpClient) -> list[Result]:
    """Runs everything at once, except checks that compare with what others found (they go second)."""
    site_memory: dict[str, dict] = {}
    results: dict[int, Result] = {}
    for second_wave in (False, True):
        wave = [i for i, check in enumerate(checks) if getattr(check.kind, "USES_SITE_DATA", False) == second_wave]
        outcomes = await asyncio.gather(*(run_once(checks[i], engine, http, {},
                                                   site_memory.setdefault(checks[i].site_id, {})) for i in wave))
        results.update(zip(wave, outcomes, strict=True))
    return [results[i] for i in range(len(checks))]


def run_checks(checks: list[CheckConfig]) -> tuple[list[Result], str]:
    """Runs the checks concurrently; returns their results and the ICMP mode (raw, unprivileged, none)."""
    engine = PingEngine()
    mode = engine.open()
    engine.start()
    http = HttpClient()
    try:
        return asyncio.run(_run_all(checks, engine, http)), mode
    finally:
        engine.stop()
        http.close()


LANGUAGES = ("en", "ru")
LANGUAGE_VARIABLE = "SITEWATCH_LANG"  # set once by a script, so every `check` it runs speaks Russian


def default_language() -> str:
    """$SITEWATCH_LANG as given (checked by `table_language`), or English when it is unset or empty."""
    return os.environ.get(LANGUAGE_VARIABLE, "").strip() or "en"


def table_language(text: str) -> str:
    """The value of ``--lang`` or of $SITEWATCH_LANG: en or ru, in either case."""
    # A locale such as ru_RU.UTF-8 names its language first.
    language = text.strip().lower().replace("-", "_").split(".")[0].split("_")[0]
    if language not in LANGUAGES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a language of the check table: expected en or ru "
                                         f"(from --lang, or from ${LANGUAGE_VARIABLE} when --lang is not given)")
    return language


class UnknownSite(Exception):
    pass


def select_checks(config: Config, site_id: str | None) -> list[CheckConfig]:
    if site_id is None:
        return config.checks()
    try:
        return list(config.site(site_id).checks)
    except KeyError:
        known = ", ".join(site.id for site in config.sites)
        raise UnknownSite(f"{config.source}: no site with id {site_id!r} (the config has: {known})") from None


def print_table(checks: list[CheckConfig], results: list[Result], out: TextIO, color: bool) -> None:
    def paint(text: str, ok: bool) -> str:
        return f"\033[{'32' if ok else '31'}m{text}\033[0m" if color else text

    rows = [("SITE", "CHECK", "TYPE", "RESULT", "REASON", "TIME", "FIGURES")]
    for check, result in zip(checks, results, strict=True):
        rows.append((check.site_id, check.name, check.type, "OK" if result.success else "FAIL",
                     "" if result.success else (result.reason or ""), f"{result.duration * 1000:.0f} ms",
                     result.figures))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for index, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(6)]
        if index:
            cells[3] = paint(cells[3], row[3] == "OK")
        out.write("  ".join(cells + [row[6]]).rstrip() + "\n")
    detailed = [(check, result) for check, result in zip(checks, results, strict=True) if result.details]
    if detailed:
        out.write("\n")
        for check, result in detailed:
            out.write(f"{check.site_id}/{check.name}:\n" + "".join(f"  {line}\n" for line in result.details))
    failed = [(check, result) for check, result in zip(checks, results, strict=True) if not result.success]
    if failed:
        out.write("\n")
        for check, result in failed:  # whole messages: the fix is often at the end of the sentence
            lines = result.message.splitlines() or [""]
            if len(lines) == 1:
                out.write(f"{check.site_id}/{check.name}: {lines[0]}\n")
            else:
                out.write(f"{check.site_id}/{check.name}:\n" + "".join(f"  - {line}\n" for line in lines))
    passed = len(results) - len(failed)
    out.write(f"\n{passed} of {len(results)} checks passed.\n")


def print_hours(config: Config, site_ids: set[str], out: TextIO) -> None:
    """Whether each site with hours is open now: a failure at a closed site is what the hours expect."""
    for site in config.sites:
        if site.id in site_ids and site.hours is not None:
            out.write(f"{site.id}: {describe(site.hours, site.timezone, time.time())}.\n")


def print_json(checks: list[CheckConfig], results: list[Result], out: TextIO) -> None:
    records = [{
        "site": check.site_id, "check": check.name, "type": check.type, "success": result.success,
        "reason": result.reason, "message": result.message, "figures": result.figures,
        "duration_seconds": round(result.duration, 6), "details": result.details,
        "values": [{"metric": s.name, "labels": dict(s.labels), "value": s.value} for s in result.samples],
    } for check, result in zip(checks, results, strict=True)]
    json.dump(records, out, ensure_ascii=False, indent=2)
    out.write("\n")


def main(config: Config, site_id: str | None, output_format: str, language: str = "en") -> int:
    checks = select_checks(config, site_id)
    results, mode = run_checks(checks)
    if mode == "none" and any(check.type == "ping" for check in checks):
        if language == "ru":
            sys.stderr.write(oneshot_ru.PING_WARNING)
        else:
            sys.stderr.write("warning: ping checks cannot send ICMP from this account; see the permission "
                             "reason below\n")
    if output_format == "json":
        print_json(checks, results, sys.stdout)
    elif language == "ru":
        oneshot_ru.print_table(checks, results, sys.stdout, color=sys.stdout.isatty())
        oneshot_ru.print_hours(config, {check.site_id for check in checks}, sys.stdout)
    else:
        print_table(checks, results, sys.stdout, color=sys.stdout.isatty())
        print_hours(config, {check.site_id for check in checks}, sys.stdout)
    return 0 if all(result.success for result in results) else 1
