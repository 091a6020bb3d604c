"""Times a full ATOL state read (`read_state`: abort, then 6 commands each queued as a task and acked, 13
packets in all) over a pseudo-terminal, with the simulator sending its answers at the line's pace (10 bits
a byte), and checks it against the target: under 1 s at 115200 baud. Prints min/median/max wall time, the
bytes exchanged per read and the time the line itself needs for them. The simulator answers at once unless
--delay models the register's own processing time; --async makes it answer every command "in progress"
and send the result in a later F0 packet.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.kkt.atol import read_state  # noqa: E402
from simulators.atol import AtolPtySimulator, AtolScenario  # noqa: E402

TARGET_BAUDRATE = 115200
TARGET_SECONDS = 1.0


def measure(baudrate: int, repetitions: int, delay: float, asynchronous: bool) -> dict[str, float]:
    scenario = AtolScenario(unsent=4, delay=delay, async_commands={"*"} if asynchronous else set(),
                            async_delay=0.01)
    simulator = AtolPtySimulator(scenario, baudrate).start()
    try:
        read_state(simulator.device, baudrate, timeout=30)  # warm-up: imports, first open of the pty
        received, sent = simulator.bytes_received, simulator.bytes_sent
        times = []
        for _ in range(repetitions):
            started = time.perf_counter()
            read_state(simulator.device, baudrate, timeout=30)
            times.append(time.perf_counter() - started)
        to_register = (simulator.bytes_received - received) / repetitions
        from_register = (simulator.bytes_sent - sent) / repetitions
    finally:
        simulator.stop()
    return {"min": min(times), "median": statistics.median(times), "max": max(times),
            "to_register": to_register, "from_register": from_register,
            "line": (to_register + from_register) * 10 / baudrate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--repetitions", type=int, default=20)
    parser.add_argument("--baudrates", default="115200", help="comma-separated, e.g. 115200 or 115200,57600")
    parser.add_argument("--delay", type=float, default=0.0, help="the register's processing time per packet, s")
    parser.add_argument("--async", dest="asynchronous", action="store_true",
                        help="every command answered in progress, its result in a later F0 packet (10 ms)")
    args = parser.parse_args()
    print(f"ATOL state read over a pty, {args.repetitions} reads per speed, register delay "
          f"{args.delay * 1000:.0f} ms per packet{', asynchronous results' if args.asynchronous else ''}")
    print(f"{'baud':>7} {'min':>8} {'median':>8} {'max':>8} {'sent':>9} {'received':>9} {'line time':>9}")
    verdict = 0
    for baudrate in (int(b) for b in args.baudrates.split(",") if b.strip()):
        figures = measure(baudrate, args.repetitions, args.delay, args.asynchronous)
        print(f"{baudrate:>7} {figures['min']:>7.3f}s {figures['median']:>7.3f}s {figures['max']:>7.3f}s "
              f"{figures['to_register']:>9.0f} {figures['from_register']:>9.0f} {figures['line']:>8.3f}s")
        if baudrate == TARGET_BAUDRATE:
            passed = figures["max"] < TARGET_SECONDS
            verdict = verdict or (0 if passed else 1)
            print(f"        {'PASS' if passed else 'MISS'}: slowest read {figures['max']:.3f}s, target under "
                  f"{TARGET_SECONDS:g}s at {TARGET_BAUDRATE} baud")
    return verdict


if __name__ == "__main__":
    sys.exit(main())
