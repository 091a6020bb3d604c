"""Finding a register's serial line speed: `baudrate: auto`, the default for serial ports.

Registers leave the factory at different speeds and many are never changed: Shtrih-M ships at 4800 baud,
Mitsu and ATOL at 115200. A fixed speed that does not match reads nothing, so each driver tries its
vendor's speeds in the vendor's own order, asking a harmless question at each, and the check remembers the
speed that answered so the next poll asks there first.

Orders: the Shtrih-M vendor driver searches 4800 up to 115200, then 2400
(`SMFiscalPrinterImpl.searchByBaudRates`, reference §10). Mitsu's and ATOL's drivers open at 115200, the
factory speed, and none of them searches (atol4j opens at the first speed the port accepts), so the rest of
their orders is ours: from fast to slow, since a unit moved off its factory speed is usually moved to
another fast one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import serial

from exporter.kkt.model import KktError

AUTO = "auto"
STANDARD = (2400, 4800, 9600, 19200, 38400, 57600, 115200)
VENDOR_ORDER = {
    "shtrih": (4800, 9600, 19200, 38400, 57600, 115200, 2400),
    "mitsu": (115200, 57600, 38400, 19200, 9600, 4800, 2400),
    "atol": (115200, 57600, 38400, 19200, 9600, 4800, 2400),
}
# How long a speed may stay silent before the next is tried: enough for a probe's bytes at 2400 baud and
# the register's reaction, short enough that seven speeds cost about two seconds.
PROBE_TIMEOUT = 0.3


def search_order(vendor: str, baudrate: int | str, remembered: int | None = None) -> tuple[int, ...]:
    """The speeds to try, in order: a configured speed alone; for `auto`, the speed that answered last time
    first, then the vendor's order."""
    if baudrate != AUTO:
        return (int(baudrate),)
    order = VENDOR_ORDER[vendor]
    if remembered in order:
        return (remembered,) + tuple(speed for speed in order if speed != remembered)
    return order


def as_speeds(baudrate: int | Sequence[int]) -> tuple[int, ...]:
    """A driver's `baudrate` argument as a tuple: one fixed speed, or speeds to search in order."""
    speeds = (baudrate,) if isinstance(baudrate, int) else tuple(baudrate)
    if not speeds or any(speed not in STANDARD for speed in speeds):
        raise KktError("error", f"baud rates are among {', '.join(map(str, STANDARD))}, not {baudrate!r}")
    return speeds


def probe_plan(baudrate: int | Sequence[int], timeout: float, network: bool) -> tuple[tuple[int, ...], float]:
    """For a vendor's probe: the speeds to ask (one over the network, where speed means nothing) and how long
    each may stay silent, so that all of them fit in `timeout`."""
    candidates = as_speeds(baudrate)[:1] if network else as_speeds(baudrate)
    each = min(timeout / len(candidates), PROBE_TIMEOUT) if len(candidates) > 1 else timeout
    return candidates, each


def find(port_object: serial.SerialBase, speeds: Sequence[int], ask: Callable[[], None], who: str,
         deadline: float | None = None) -> int:
    """The first of `speeds` at which `ask()` (the vendor's harmless question) gets an answer.

    `ask` raises KktError when nothing sensible answers. A port opened at `speeds[0]` is switched to each
    further speed in turn, until the read's `deadline` (time.monotonic()) passes; a single speed is asked
    once, and its own error stands. The error for no answer names each speed tried and what it got.
    """
    failures: list[tuple[int, KktError]] = []
    for index, speed in enumerate(speeds):
        if index:
            if deadline is not None and time.monotonic() >= deadline:
                break  # the read's time is up: the speeds not asked are not named as silent
            port_object.baudrate = speed
        port_object.reset_input_buffer()  # bytes heard at the last speed are not an answer at this one
        try:
            ask()
            return speed
        except KktError as err:
            if err.reason not in ("timeout", "protocol"):
                raise  # the port went away, or the register answered with an error: no other speed helps
            failures.append((speed, err))
    if len(failures) == 1:
        raise failures[0][1]
    reason = "protocol" if any(err.reason == "protocol" for _, err in failures) else "timeout"
    tried = ", ".join(str(speed) for speed, _ in failures)
    raise KktError(reason, f"{who} answered at none of {tried} baud ({_each(failures, who)}): is it switched on, "
                           f"connected to this port, and is it this vendor's register?")


def _each(failures: list[tuple[int, KktError]], who: str) -> str:
    """What each speed got, speeds with the same outcome together: "at 4800, 9600: did not answer …"."""
    by_message: dict[str, list[int]] = {}
    for speed, err in failures:
        text = err.message.removeprefix(who).strip().removeprefix(":").strip()
        by_message.setdefault(text, []).append(speed)
    return "; ".join(f"at {', '.join(map(str, group))}: {text}" for text, group in by_message.items())
