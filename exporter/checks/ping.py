"""The ``ping`` check: several ICMP echo requests to one host, loss ratio and round-trip times.

One lost packet on a lossy line is not an outage: the check passes while the loss stays at or below
``max_loss``. Packets go through the process-wide ping engine, so thousands of ping checks share one socket.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import threading
import weakref
from typing import Any

from exporter import schema as s
from exporter.checks.base import CheckContext, MetricSpec, Result, Sample
from exporter.icmp.engine import PingOutcome

NAME = "ping"
OPTIONS = s.struct({
    "host": s.Field(s.string(what="a host name or IP address"), required=True),
    "count": s.Field(s.integer(1, 100), default=5),
    "interval": s.Field(s.duration(minimum=0.01, maximum=60), default=1.0),
    "timeout": s.Field(s.duration(minimum=0.01, maximum=60), default=2.0),
    "max_loss": s.Field(s.number(0, 1), default=0.5),
    "ip_version": s.Field(lambda value, path: s.choice("auto", "4", "6")(
        str(value) if value in (4, 6) else value, path), default="auto"),
})
METRICS = (
    MetricSpec("sitewatch_ping_loss_ratio", "Lost / sent echo requests in the latest run (0..1)."),
    MetricSpec("sitewatch_ping_rtt_seconds", "Round-trip times of the latest run's replies.", ("stat",)),
)

def target(options: dict[str, Any]) -> str:
    """What the check looks at, for people: the host it pings."""
    return options["host"]



def validate(options: dict[str, Any], check_timeout: float, path: str) -> None:
    needed = (options["count"] - 1) * options["interval"] + options["timeout"]
    if needed > check_timeout:
        raise s.Invalid(
            s.join(path, "timeout"),
            f"a check timeout of at least {needed:g}s, as {options['count']} packets "
            f"{options['interval']:g}s apart with a {options['timeout']:g}s packet timeout need that long "
            "(set the check's timeout, or a longer interval: an unset timeout is at most the interval)",
            check_timeout,
        )


@functools.lru_cache(maxsize=65536)
def _literal(host: str) -> str | None:
    # Cached: a check asks on every run, and parsing an address costs more than the rest of preparing a ping.
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def resolve(host: str, ip_version: str) -> str:
    """Returns an IP literal for `host`; raises OSError when the name does not resolve."""
    literal = _literal(host)
    if literal is not None:
        return literal
    family = {"4": socket.AF_INET, "6": socket.AF_INET6}.get(ip_version, socket.AF_UNSPEC)
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=family, type=socket.SOCK_RAW)
    if ip_version == "auto":  # prefer IPv4, as most site networks are IPv4-only
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return infos[0][4][0]


async def run(options: dict[str, Any], context: CheckContext) -> Result:
    host = options["host"]
    try:
        address = await resolve(host, options["ip_version"])
    except OSError as err:
        return Result.failed("dns", f"cannot resolve {host}: {err.strerror or err}")
    loop = asyncio.get_running_loop()
    future: asyncio.Future[PingOutcome] = loop.create_future()
    deliveries = _deliveries_to(loop)
    context.ping_engine.ping(address, options["count"], options["interval"], options["timeout"],
                             lambda outcome: deliveries.put(future, outcome))
    outcome = await future
    return judge(outcome, host, options["max_loss"])


class _Deliveries:
    """Hands outcomes from the ping engine's thread to one event loop, waking the loop once per batch.

    Waking a loop from another thread is a write to its self-pipe, a syscall per call; the engine often
    settles several pings in one pass, and thousands of ping checks would pay one each."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._waiting: list[tuple[asyncio.Future[PingOutcome], PingOutcome]] = []

    def put(self, future: asyncio.Future[PingOutcome], outcome: PingOutcome) -> None:
        with self._lock:
            first = not self._waiting
            self._waiting.append((future, outcome))
        if first:
            try:
                self._loop.call_soon_threadsafe(self._hand_over)
            except RuntimeError:
                pass  # the loop is gone (a one-shot run ended): nobody waits for this outcome any more

    def _hand_over(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        for future, outcome in batch:
            if not future.done():  # cancelled by the check's timeout
                future.set_result(outcome)


_DELIVERIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deliveries] = weakref.WeakKeyDictionary()
_DELIVERIES_LOCK = threading.Lock()


def _deliveries_to(loop: asyncio.AbstractEventLoop) -> _Deliveries:
    with _DELIVERIES_LOCK:
        found = _DELIVERIES.get(loop)
        if found is None:
            found = _DELIVERIES[loop] = _Deliveries(loop)
        return found


def judge(outcome: PingOutcome, host: str, max_loss: float) -> Result:
    """Turns the packets' fate into a result: pass while loss <= max_loss."""
    if outcome.permission_denied:
        return Result.failed("permission", outcome.error or "ICMP is not permitted")
    target = host if host == outcome.address else f"{host} ({outcome.address})"
    samples = [Sample("sitewatch_ping_loss_ratio", outcome.loss_ratio)]
    figures = f"{outcome.received}/{outcome.sent} replies"
    if outcome.rtts:
        low, high = min(outcome.rtts), max(outcome.rtts)
        mean = sum(outcome.rtts) / len(outcome.rtts)
        samples += [Sample("sitewatch_ping_rtt_seconds", value, (("stat", stat),))
                    for stat, value in (("min", low), ("avg", mean), ("max", high))]
        figures += f", rtt {low * 1000:.2f}/{mean * 1000:.2f}/{high * 1000:.2f} ms"
    if outcome.sent and outcome.loss_ratio <= max_loss:
        return Result(True, figures=figures, samples=samples)
    if outcome.error and outcome.received == 0:
        return Result.failed("unreachable", f"cannot send to {target}: {outcome.error}", figures, samples)
    if outcome.received == 0:
        return Result.failed("timeout", f"no reply from {target} to {outcome.sent} echo requests", figures, samples)
    return Result.failed(
        "loss",
        f"{outcome.loss_ratio:.0%} of echo requests to {target} lost (allowed: {max_loss:.0%})",
        figures, samples,
    )
