"""The serial line of a simulated register: a pseudo-terminal that behaves as a real RS-232 or USB-serial port.

A register listens at one line speed. Bytes the driver sends at another speed are noise to it: it answers
nothing (`bytes_ignored` counts them). Its own bytes go out no faster than its speed carries them, 10 bits a
byte. The simulator holds only the pty's master side; the device node (`.device`) is free between polls,
exactly as a real port is, so a driver that looks for other holders of the port finds none.

A simulator subclasses `PtyLine` and adds its protocol in `_received(data, arrived)`; `_due()` and
`_next_due(longest)` let it send on its own (ATOL's deferred answers).
"""

from __future__ import annotations

import os
import select
import termios
import threading
import time
import tty

NO_DRIVER_WAIT = 0.005  # while no program has the port open the master reads EIO at once: do not spin on it


class PtyLine:
    """A register's serial port at `baudrate` on a pseudo-terminal; `.device` is the path a driver opens."""

    thread_name = "pty-line"

    def __init__(self, baudrate: int = 115200):
        self.baudrate = baudrate
        self.device = ""
        self.bytes_received = 0
        self.bytes_sent = 0
        self.bytes_ignored = 0  # received at another line speed than the register's
        self.speeds_seen: list[int] = []  # every line speed a driver spoke at, in order, repeats folded
        self._speed = getattr(termios, f"B{baudrate}")
        self._master: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self):
        self._master, slave = os.openpty()
        # raw: no echo of frames back to the driver, no newline translation of binary data
        tty.setraw(slave)
        self.device = os.ttyname(slave)
        os.close(slave)  # a real port is held by nobody until a program opens it
        os.set_blocking(self._master, False)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._master is not None:
            os.close(self._master)
        self._master = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def byte_time(self) -> float:
        return 10 / self.baudrate  # start bit, 8 data bits, stop bit

    def line_speed_matches(self) -> bool:
        """Whether the driver set the line to the register's speed. The termios settings belong to the tty, and
        on Linux the master side reads the slave's, so this sees what the driver's handle set."""
        try:
            speed = termios.tcgetattr(self._master)[4]
        except termios.error:
            return False
        if not self.speeds_seen or self.speeds_seen[-1] != speed:
            self.speeds_seen.append(speed)
        return speed == self._speed

    # --- what a protocol adds ---

    def _received(self, data: bytes, arrived: float) -> None:
        raise NotImplementedError

    def _due(self) -> None:
        """Sends whatever the protocol scheduled for now; called on every turn of the loop."""

    def _next_due(self, longest: float) -> float:
        """How long the loop may wait for bytes before `_due` has something to send."""
        return longest

    # --- the loop and the line ---

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], self._next_due(0.05))
            self._due()
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:  # EIO: no program has the port open
                self._stop.wait(NO_DRIVER_WAIT)
                continue
            arrived = time.monotonic()
            if not self.line_speed_matches():
                self.bytes_ignored += len(data)  # noise at the register's speed: nothing it can answer
                continue
            self.bytes_received += len(data)
            self._received(data, arrived)

    def _sleep_until(self, moment: float) -> None:
        wait = moment - time.monotonic()
        if wait > 0:
            self._stop.wait(wait)

    def _send(self, data: bytes) -> None:
        """Writes `data` no faster than the line carries it: a few bytes, then a pause to their due time."""
        chunk = max(1, int(self.baudrate / 10 * 0.002))  # what the line carries in about 2 ms
        started = time.monotonic()
        sent = 0
        while sent < len(data) and not self._stop.is_set():
            self._sleep_until(started + sent * self.byte_time)
            try:
                sent += os.write(self._master, data[sent:sent + chunk])
            except BlockingIOError:  # the driver is not reading and the pty's queue is full
                select.select([], [self._master], [], 0.05)
            except OSError:  # the driver closed the port mid-answer: the rest goes nowhere
                break
        self.bytes_sent += sent
        self._sleep_until(started + len(data) * self.byte_time)  # the last byte's stop bit
