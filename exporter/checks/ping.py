"""The ``ping`` check: several ICMP echo requests to one host, loss ratio and round-trip times.

One lost packet on a lossy line is not an outage: the check passes while the loss stays at or below
``max_loss``. Packets go through the process-wide ping engine, so thousands of ping checks share one socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
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


async def resolve(host: str, ip_version: str) -> str:
    """Returns an IP literal for `host`; raises OSError when the name does not resolve."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
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

    def deliver(outcome: PingOutcome) -> None:
        try:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(outcome))
        except RuntimeError:
            pass  # the loop is gone (a one-shot run ended): nobody waits for this outcome any more

    context.ping_engine.ping(address, options["count"], options["interval"], options["timeout"], deliver)
    outcome = await future
    return judge(outcome, host, options["max_loss"])


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
