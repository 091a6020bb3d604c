"""Times a full Shtrih-M state read (`read_state`: 7 commands, each behind its ENQ/NAK handshake and followed
by the host's ACK) over a pseudo-terminal, with the simulator sending its bytes at the line's pace (10 bits
a byte), and checks it against the target: under 1 s at 115200 baud. Prints min/median/max wall time, the
bytes exchanged per read and the time the line itself needs for them. The simulator answers at once unless
--delay models the register's own processing time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.kkt.shtrih import read_state  # noqa: E402
from simulators.shtrih import ShtrihPtySimulator, ShtrihScenario  # noqa: E402

TARGET_BAUDRATE = 115200
TARGET_SECONDS = 1.0


def measure(baudrate: int, repetitions: int, delay: float) -> dict[str, float]:
    scenario = ShtrihScenario(unsent=4, delay=delay)
    simulator = ShtrihPtySimulator(scenario, baudrate).start()
    try:
        read_state(simulator.device, baudrate, timeout=30)  # warm-up: imports, first open of the pty
        time.sleep(0.05)  # the last ACK reaches the simulator after the driver has closed the port
        received, sent = simulator.bytes_received, simulator.bytes_sent
        times = []
        for _ in range(repetitions):
            started = time.perf_counter()
            read_state(simulator.device, baudrate, timeout=30)
            times.append(time.perf_counter() - started)
        time.sleep(0.05)
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
    parser.add_argument("--baudrates", default="115200", help="comma-separated, e.g. 115200 or 115200,9600")
    parser.add_argument("--delay", type=float, default=0.0, help="the register's processing time per command, s")
    args = parser.parse_args()
    print(f"Shtrih-M state read over a pty, {args.repetitions} reads per speed, register delay "
          f"{args.delay * 1000:.0f} ms per command")
    print(f"{'baud':>7} {'min':>8} {'median':>8} {'max':>8} {'sent':>9} {'received':>9} {'line time':>9}")
    verdict = 0
    for baudrate in (int(b) for b in args.baudrates.split(",") if b.strip()):
        figures = measure(baudrate, args.repetitions, args.delay)
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
