"""Times `baudrate: auto` against a fixed speed on registers left at 4800, 9600, 57600 and 115200 baud, and a
networked Mitsu read with one connection per command against one connection for the whole read.

For each vendor and line speed, over a pseudo-terminal whose simulator is deaf at any other speed:
- first poll, `auto` with nothing remembered: the vendor's order is searched, then the state is read;
- later polls, `auto` with the found speed remembered: asked there first, no search;
- fixed at that speed (what a user who knows the speed would write);
- fixed at 115200, the old default (what an unchanged config did): read or not.
The time to find the speed is the first poll less a later one. Then the Mitsu network link, whose real
unit closes after every reply: a connection per command (the driver now) against a single connection
(only possible on a simulator told to keep it open, since a real unit refuses it).

    .venv/bin/python bench/kkt_speeds.py [-n 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.kkt import atol, mitsu, shtrih, speeds  # noqa: E402
from exporter.kkt.model import KktError  # noqa: E402
from simulators.atol import AtolPtySimulator, AtolScenario  # noqa: E402
from simulators.mitsu import MitsuPtySimulator, MitsuScenario, MitsuTcpSimulator  # noqa: E402
from simulators.shtrih import ShtrihPtySimulator, ShtrihScenario  # noqa: E402

VENDORS = {
    "shtrih": (shtrih, lambda speed: ShtrihPtySimulator(ShtrihScenario(), speed)),
    "mitsu": (mitsu, lambda speed: MitsuPtySimulator(MitsuScenario(unsent=4, fn_edition="ФН-1.2"), speed)),
    "atol": (atol, lambda speed: AtolPtySimulator(AtolScenario(), speed)),
}
SPEEDS = (4800, 9600, 57600, 115200)
OLD_DEFAULT = 115200
TIMEOUT = 20.0


def _timed(driver, port: str, baudrate) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        driver.read_state(port, baudrate, timeout=TIMEOUT, command_timeout=2.0)
        outcome = "read"
    except KktError as err:
        outcome = err.reason
    return time.perf_counter() - started, outcome


def measure(vendor: str, speed: int, repetitions: int) -> dict[str, object]:
    driver, make = VENDORS[vendor]
    order = speeds.search_order(vendor, speeds.AUTO)
    remembered = speeds.search_order(vendor, speeds.AUTO, speed)
    with make(speed) as simulator:
        _timed(driver, simulator.device, speed)  # warm-up: imports, first open of the pty
        first = [_timed(driver, simulator.device, order) for _ in range(repetitions)]
        later = [_timed(driver, simulator.device, remembered) for _ in range(repetitions)]
        fixed = [_timed(driver, simulator.device, speed) for _ in range(repetitions)]
        old_time, old_outcome = _timed(driver, simulator.device, OLD_DEFAULT)
    if any(outcome != "read" for _, outcome in first + later + fixed):
        raise SystemExit(f"{vendor} at {speed}: a read failed: {[o for _, o in first + later + fixed]}")
    first_s = statistics.median(t for t, _ in first)
    later_s = statistics.median(t for t, _ in later)
    return {"position": order.index(speed) + 1, "first": first_s, "later": later_s,
            "fixed": statistics.median(t for t, _ in fixed), "search": max(0.0, first_s - later_s),
            "old": f"{old_outcome} in {old_time:.2f}s"}


def network(repetitions: int) -> dict[str, float]:
    figures = {}
    for label, keep in (("connection per command", False), ("one connection (simulator only)", True)):
        with MitsuTcpSimulator(MitsuScenario(unsent=4, keep_connection=keep)) as simulator:
            if keep:  # the read below opens a connection per command; force the old way through a raw link
                times = [_one_connection_read(simulator) for _ in range(repetitions)]
            else:
                mitsu.read_state(simulator.url, timeout=TIMEOUT)
                times = [_timed(mitsu, simulator.url, 115200)[0] for _ in range(repetitions)]
            figures[label] = statistics.median(times)
    return figures


def _one_connection_read(simulator: MitsuTcpSimulator) -> float:
    """The seven commands over one socket, as the driver used to send them (timing only)."""
    import socket

    from exporter.kkt import mitsu_codec as codec

    commands = (mitsu.DEV, mitsu.VER, mitsu.REG, mitsu.FN, mitsu.OFD, mitsu.CLOCK, mitsu.SHIFT)
    started = time.perf_counter()
    with socket.create_connection((simulator.host, simulator.port), timeout=5) as sock:
        for command in commands:
            sock.sendall(codec.tcp_split(command.encode(codec.ENCODING)))
            buffer = bytearray()
            while codec.tcp_reply(buffer) is None:
                buffer += sock.recv(4096)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--repetitions", type=int, default=5)
    args = parser.parse_args()
    print(f"Serial speed search (baudrate: auto) against fixed speeds; medians of {args.repetitions} reads; "
          f"{speeds.PROBE_TIMEOUT:g}s per silent speed")
    print(f"{'vendor':<7} {'baud':>6} {'tried':>5} {'first poll':>10} {'search':>7} {'later':>7} {'fixed':>7}  "
          f"fixed at {OLD_DEFAULT} (old default)")
    for vendor in VENDORS:
        for speed in SPEEDS:
            f = measure(vendor, speed, args.repetitions)
            print(f"{vendor:<7} {speed:>6} {f['position']:>5} {f['first']:>9.3f}s {f['search']:>6.3f}s "
                  f"{f['later']:>6.3f}s {f['fixed']:>6.3f}s  {f['old']}")
    print()
    print(f"Mitsu over TCP, full read (7 commands), median of {args.repetitions}:")
    for label, seconds in network(args.repetitions).items():
        print(f"  {label:<32} {seconds * 1000:>7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
