"""Runs one check once within its timeout and always returns a `Result`, never an exception."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable

from exporter.checks.base import CheckContext, Result
from exporter.config.model import CheckConfig
from exporter.httpclient import HttpClient
from exporter.icmp.engine import PingEngine
from exporter.redaction import redact

log = logging.getLogger(__name__)
_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


async def _within(coroutine: Awaitable[Result], seconds: float) -> Result:
    # asyncio.timeout (Python 3.11+) runs the check in the caller's task; wait_for wraps it in one more task
    # per run, which thousands of checks feel.
    if _timeout is None:
        return await asyncio.wait_for(coroutine, seconds)
    async with _timeout(seconds):
        return await coroutine


async def run_once(check: CheckConfig, ping_engine: PingEngine, http: HttpClient,
                   memory: dict[str, Any] | None = None, site_memory: dict[str, Any] | None = None) -> Result:
    timeout = check.schedule.timeout
    context = CheckContext(ping_engine=ping_engine, http=http, timeout=timeout, timezone=check.timezone,
                           memory=memory if memory is not None else {},
                           site_memory=site_memory if site_memory is not None else {})
    started = time.perf_counter()
    try:
        result = await _within(check.kind.run(check.options, context), timeout)
    except asyncio.TimeoutError:
        result = Result.failed("timeout", f"no result within the check's timeout of {timeout:g}s")
    except Exception as err:  # a bug in one check must not stop the others
        log.exception("event=check_crashed site=%s check=%s", check.site_id, check.name)
        result = Result.failed("error", f"internal error in the {check.type} check: {type(err).__name__}: {err}")
    result.duration = time.perf_counter() - started
    result.finished_at = time.time()
    result.message = redact(result.message)
    result.details = [redact(line) for line in result.details]
    return result
