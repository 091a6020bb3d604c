"""The ``kkt`` check: reads a fiscal register's and its ФН's state over its serial port or the network.

The till's POS program shares the port, so the check opens it only for the poll, closes it at once, polls
hourly by default, and gives up at once with reason ``port_busy`` when the till holds it. The last good
reading stays exported (with its own data timestamp) while the register cannot be read, because a ФН's
expiry date does not stop being true when the port is busy; ``sitewatch_kkt_up`` says whether the latest
read worked.
"""

from __future__ import annotations

import logging
import time
from types import ModuleType
from typing import Any

from exporter import schema as s
from exporter.checks.base import CheckContext, Result, Sample
from exporter.kkt import atol, mitsu, shtrih, speeds, transport
from exporter.kkt import metrics as kkt_metrics
from exporter.kkt.model import KktError, KktState

log = logging.getLogger("sitewatch.exporter")
NAME = "kkt"
DEFAULT_INTERVAL = 3600.0  # the till shares the port: poll rarely
DRIVERS: dict[str, ModuleType] = {"mitsu": mitsu, "atol": atol, "shtrih": shtrih}
# `driver: auto` asks in this order: a Shtrih ENQ is one byte, an ATOL frame is ignored by the others.
PROBE_ORDER = ("shtrih", "atol", "mitsu")


def _port(value: Any, path: str) -> str:
    return s.string(what="a port such as COM7, /dev/ttyUSB0, socket://10.0.0.9:8200 or tcp://10.0.0.9:8200")(
        value, path)


def _baudrate(value: Any, path: str) -> int | str:
    if value == speeds.AUTO or (value in speeds.STANDARD and not isinstance(value, bool)):
        return value
    raise s.Invalid(path, "auto or one of " + ", ".join(map(str, speeds.STANDARD)), value)


OPTIONS = s.struct({
    "driver": s.Field(s.choice("auto", *DRIVERS), required=True),
    "port": s.Field(_port, required=True),
    # auto: the vendor's speeds in the vendor's order, the one that answered last time first
    "baudrate": s.Field(_baudrate, default=speeds.AUTO),
    "serial": s.Field(s.string(r"[0-9A-Za-z-]{1,32}", "the register's serial (factory) number")),
    "command_timeout": s.Field(s.duration(minimum=0.1, maximum=60), default=2.0),
    # The register's access password: ATOL's defaults to 0, Shtrih-M's administrator password to 30.
    "password": s.Field(s.integer(0, 99999999)),
})
METRICS = kkt_metrics.KKT_METRICS


def target(options: dict[str, Any]) -> str:
    """What the check looks at, for people: the register's port (tcp://host:port over the network)."""
    port = options["port"]
    return "tcp://" + transport.network_url(port)[len("socket://"):] if transport.is_network(port) else port


def known_fns(site_memory: dict[str, Any]) -> dict[str, str]:
    """ФН numbers the site's checks last read, by register serial, for checks that compare with them."""
    return site_memory.setdefault("fn_by_kkt", {})


def _read(options: dict[str, Any], vendor: str, memory: dict[str, Any], timeout: float, timezone) -> KktState:
    extra = {} if options["password"] is None or vendor == "mitsu" else {"password": options["password"]}
    order = speeds.search_order(vendor, options["baudrate"], memory.get("baudrate"))
    state = DRIVERS[vendor].read_state(options["port"], order, timeout, timezone, options["command_timeout"],
                                       **extra)
    if state.baudrate is not None:
        memory["baudrate"] = state.baudrate  # asked first next time, so a found speed is searched for once
    return state


def detect_vendor(port: str, baudrate: int | str, timeout: float) -> tuple[str, int]:
    """Which vendor answers on `port`, and at which speed, asking each in turn with a harmless query (at each
    of its speeds, for `auto`)."""
    for vendor in PROBE_ORDER:
        speed = DRIVERS[vendor].probe(port, speeds.search_order(vendor, baudrate), timeout)
        if speed is not None:
            return vendor, speed
    at = "at any of their speeds" if baudrate == speeds.AUTO else f"at {baudrate} baud"
    raise KktError("not_found", f"no Mitsu, ATOL or Shtrih-M register answered on {port} {at}")


def _read_any(options: dict[str, Any], memory: dict[str, Any], timeout: float, timezone) -> KktState:
    deadline = time.monotonic() + timeout
    vendor = options["driver"]
    if vendor == "auto" and not memory.get("vendor"):
        # a fixed speed is asked once per vendor; for `auto` each vendor's speeds share a quarter of the time
        budget = timeout / 4 if options["baudrate"] == speeds.AUTO else min(options["command_timeout"], timeout / 4)
        vendor, speed = detect_vendor(options["port"], options["baudrate"], budget)
        memory["vendor"] = vendor  # kept through a read that runs out of time: the next poll reads at once
        if not transport.is_network(options["port"]):
            memory["baudrate"] = speed  # the read asks there first instead of searching again
    elif vendor == "auto":
        vendor = memory["vendor"]
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise KktError("timeout", f"finding the register on {options['port']} took the whole {timeout:g}s")
    state = _read(options, vendor, memory, remaining, timezone)
    memory["vendor"] = vendor  # found once, kept: the till's port is not asked three times every hour
    return state


async def run(options: dict[str, Any], context: CheckContext) -> Result:
    try:
        state = await context.workers.run(_read_any, options, context.memory, context.timeout * 0.9,
                                          context.timezone)
    except KktError as err:
        if err.reason in ("timeout", "protocol"):
            # nothing sensible answered: maybe another speed now (the search asks the old one first anyway)
            context.memory.pop("baudrate", None)
        if options["driver"] == "auto" and err.reason not in ("port_busy", "permission", "timeout", "disconnected"):
            # something else answered than the vendor found: maybe another register now, ask again next time
            context.memory.pop("vendor", None)
        result = _unreadable(options, context, err)
        result.details.extend(_busy_check_gaps(options["port"], context))
        return result
    samples = kkt_metrics.state_samples(state)
    details = [kkt_metrics.summary(state, context.timezone)] + _busy_check_gaps(options["port"], context)
    expected = options["serial"]
    if expected and expected != state.serial:
        # Not the register this check watches: export what answered, but do not remember it as ours.
        return Result.failed("wrong_device", f"{options['port']} answers as register №{state.serial}, not the "
                                             f"configured №{expected}: was the register swapped?",
                             samples=samples, details=details)
    context.memory["state"] = state
    if state.fn is not None and state.fn.serial:
        known_fns(context.site_memory)[state.serial] = state.fn.serial
    return Result(True, figures=f"{state.model} №{state.serial}", samples=samples, details=details)


def _busy_check_gaps(port: str, context: CheckContext) -> list[str]:
    """A line saying that the look for a till holding the port could not see every process, logged once."""
    if transport.is_network(port):
        return []
    unseen = transport.unseen_processes(port)
    if not unseen:
        return []
    if not context.memory.get("busy_check_gap_logged"):
        context.memory["busy_check_gap_logged"] = True
        log.warning("event=port_busy_check_incomplete port=%s unseen_processes=%d hint=%r", port, unseen,
                    "run the exporter as the till's user, or grant it CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE")
    return [f"could not look into {unseen} other processes (other users'): a till among them holding {port} "
            f"without a lock would not be noticed; run as the till's user, as root, or with "
            f"CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE"]


def _unreadable(options: dict[str, Any], context: CheckContext, err: KktError) -> Result:
    last: KktState | None = context.memory.get("state")
    label = last.serial if last else (options["serial"] or options["port"])
    samples: list[Sample] = []
    details: list[str] = []
    if last is not None:  # keep what is still true, marked by its old data timestamp
        samples = [sample for sample in kkt_metrics.state_samples(last) if sample.name != "sitewatch_kkt_up"]
        age = (time.time() - last.data_time) / 3600 if last.data_time else 0
        details.append(f"last read {age:.1f} h ago: {kkt_metrics.summary(last, context.timezone)}")
    else:
        details.append(f"register on {options['port']} never read yet")
    samples.append(kkt_metrics.up_sample(label, False))
    return Result.failed(err.reason, err.message, samples=samples, details=details)
