"""Opens a register's port for one poll, the way pyserial does: `COM7`, `/dev/ttyUSB0`, `socket://host:port`
or `tcp://host:port` all give a pyserial port object, and the drivers above never know which. Open it in
a `with` block so the port is free again for the till the moment the poll ends.

Failures become `KktError`s with a fixed reason: ``port_busy``, ``not_found``, ``permission``, ``refused``,
``timeout``, ``unreachable``, ``dns`` or ``error``.

A till program may open the serial device without any lock; the exclusive open cannot see that one, so on
Linux the port also counts as busy while any other process holds the device open (`port_holders`).
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import serial
from serial.urlhandler import protocol_socket

from exporter.kkt.model import KktError

_NETWORK_SCHEMES = ("socket://", "tcp://")
# Reasons that are about the port, not about what answers on it: no vendor's driver would do better.
PORT_FAULTS = frozenset({"port_busy", "not_found", "permission", "refused", "dns", "unreachable"})


def probe_answer(ask: Callable[[], int | None]) -> int | None:
    """What a vendor's probe found (`ask()`: the speed that answered, or None). A fault of the port itself
    (`PORT_FAULTS`) is raised, since no vendor could answer there; anything else means "not this vendor"."""
    try:
        return ask()
    except KktError as err:
        if err.reason in PORT_FAULTS:
            raise
        return None
    except Exception:  # noqa: BLE001 - otherwise a probe answers yes or no, whatever happens
        return None


def is_network(port: str) -> bool:
    """True for a register reached over TCP (`socket://host:port`, `tcp://host:port`)."""
    return port.strip().lower().startswith(_NETWORK_SCHEMES)


def network_url(port: str) -> str:
    """`tcp://host:port` in pyserial's spelling, `socket://host:port`."""
    port = port.strip()
    if port.lower().startswith("tcp://"):
        return "socket://" + port[len("tcp://"):]
    return "socket://" + port[len("socket://"):] if port.lower().startswith("socket://") else port


def connect(port: str, timeout: float) -> socket.socket:
    """A new TCP connection to a network register, made within `timeout`; KktError if it cannot be made."""
    url = network_url(port)
    where = url[len("socket://"):]
    try:
        sock = socket.create_connection(_address(port), timeout=timeout)
    except ConnectionRefusedError:
        raise KktError("refused", f"{where} refused the connection: is the register on, and is this its network "
                                  "port (by default Mitsu 8200, ATOL 5555, Shtrih-M 7778)?") from None
    except TimeoutError:
        raise KktError("timeout", f"{where} did not accept a connection within {timeout:g}s") from None
    except socket.gaierror as err:
        raise KktError("dns", f"cannot resolve the register's host in {port}: {err.strerror}") from None
    except OSError as err:
        if err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            raise KktError("unreachable", f"{where} is unreachable: {err.strerror}") from None
        raise KktError("error", f"cannot connect to {where}: {err}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # commands are tiny; send each at once
    return sock


def _address(port: str) -> tuple[str, int]:
    """(host, port) of `socket://host:port`; KktError naming the expected form for anything else."""
    parts = urlsplit(network_url(port))
    try:
        number = parts.port
    except ValueError:
        number = None
    if not parts.hostname or number is None or parts.query or parts.path not in ("", "/"):
        raise KktError("error", f"{port} is not a valid network port; write socket://host:port") from None
    return parts.hostname, number


class _NetworkPort(protocol_socket.Serial):
    """pyserial's `socket://` port, but connecting within the poll's own time limit (pyserial waits a fixed
    5 s) and closing at once (pyserial sleeps 0.3 s after every close, which a poll has no use for)."""

    def __init__(self, url: str, connect_timeout: float, **kwargs):
        self._connect_timeout = connect_timeout
        super().__init__(url, **kwargs)

    def open(self) -> None:
        if self.is_open:
            raise serial.SerialException("Port is already open.")
        self.logger = None  # pyserial's socket port logs only when its URL asks to
        sock = connect(self.portstr, self._connect_timeout)
        sock.setblocking(False)  # pyserial's socket port reads with select()
        self._socket = sock
        self.is_open = True
        self.reset_input_buffer()

    def close(self) -> None:
        if self.is_open and self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the register may have dropped the connection already
            self._socket.close()
        self._socket = None
        self.is_open = False


def open_port(port: str, baudrate: int, timeout: float) -> serial.SerialBase:
    """The open port, with `timeout` for each read and write (and for connecting over the network).

    Serial ports are opened exclusively (Linux: flock; Windows ports are always exclusive), so a port the
    POS program holds fails fast with ``port_busy`` instead of two programs reading each other's replies.
    On Linux a port that another process holds open without a lock is ``port_busy`` too, before a byte
    is sent or the line's speed is touched.
    """
    if is_network(port):
        return _open_network(port, timeout)
    holders = port_holders(port)
    if holders:
        # checked before the open: opening sets the line's speed, which would already disturb the till
        pid, name = holders[0]
        others = f" and {len(holders) - 1} more" if len(holders) > 1 else ""
        raise KktError("port_busy", f"{port} is held open by {name} (pid {pid}){others}, the till's program? "
                                    f"Nothing was sent; will try again next interval")
    try:
        return serial.serial_for_url(port, baudrate=baudrate, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
                                     stopbits=serial.STOPBITS_ONE, timeout=timeout, write_timeout=timeout,
                                     exclusive=True)
    except serial.SerialException as err:
        raise _serial_error(port, err) from None
    except (OSError, ValueError) as err:
        raise KktError("error", f"cannot open {port}: {err}") from None


def port_holders(device: str, proc: str = "/proc") -> list[tuple[int, str]]:
    """Other processes that hold `device` open, as (pid, program name), lowest pid first.

    Linux only (elsewhere, and for names that are not a device, the list is empty). Processes whose
    descriptors this user may not read (other users', without root or both CAP_DAC_READ_SEARCH and
    CAP_SYS_PTRACE) cannot be seen:
    `unseen_processes` counts them for the last scan of each device.
    """
    holders, unseen = _scan(device, proc)
    with _unseen_lock:
        _unseen[device] = unseen
    return holders


def unseen_processes(device: str) -> int:
    """How many other processes the last scan of `device` could not look into: a till among them that
    opens the port without a lock would not have been noticed."""
    with _unseen_lock:
        return _unseen.get(device, 0)


_unseen: dict[str, int] = {}
_unseen_lock = threading.Lock()


def _scan(device: str, proc: str) -> tuple[list[tuple[int, str]], int]:
    if not sys.platform.startswith("linux") or not os.path.isdir(proc):
        return [], 0
    try:
        target = os.path.realpath(device, strict=True)
    except OSError:
        return [], 0  # no such device: the open says so with its own reason
    own = os.getpid()  # this process holds nothing between polls; a second poll here meets the lock instead
    holders = []
    unseen = 0
    # What root may not read belongs to another user namespace (a container's runtime), not to a till here.
    root = os.geteuid() == 0
    for entry in os.scandir(proc):
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        held = _holds(os.path.join(entry.path, "fd"), target)
        if held is None and not root:
            unseen += 1
        elif held:
            holders.append((int(entry.name), _program(entry.path)))
    return sorted(holders), unseen


def _holds(fd_dir: str, target: str) -> bool | None:
    """Whether the process holds `target` open; None when its descriptors may not be read."""
    try:
        descriptors = os.listdir(fd_dir)
    except PermissionError:
        return None
    except OSError:  # gone since the scan began, or a kernel thread
        return False
    for fd in descriptors:
        try:
            if os.readlink(os.path.join(fd_dir, fd)) == target:
                return True
        except PermissionError:
            return None  # listed (CAP_DAC_READ_SEARCH) but not readable without CAP_SYS_PTRACE
        except OSError:
            continue  # closed since the listing
    return False


def _program(process_dir: str) -> str:
    try:
        with open(os.path.join(process_dir, "comm"), encoding="utf-8", errors="replace") as comm:
            return comm.read().strip() or "?"
    except OSError:
        return "?"


def _serial_error(port: str, err: serial.SerialException) -> KktError:
    code = getattr(err, "errno", None)
    text = str(err)
    busy = KktError("port_busy", f"{port} is in use by another program (the till?); will try again next interval")
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY) or "exclusively lock" in text:
        return busy
    if os.name == "nt" and ("PermissionError" in text or "Access is denied" in text):
        return busy  # Windows refuses a second handle to a COM port with "access denied"
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or "FileNotFoundError" in text \
            or "cannot find the file" in text:
        return KktError("not_found", f"{port} does not exist: is the register plugged in and switched on?")
    if code in (errno.EACCES, errno.EPERM):
        return KktError("permission", f"no permission to open {port} (Linux: add the exporter's user to the "
                                      f"dialout group)")
    return KktError("error", f"cannot open {port}: {text}")


def _open_network(port: str, timeout: float) -> serial.SerialBase:
    try:
        return _NetworkPort(network_url(port), connect_timeout=timeout, timeout=timeout, write_timeout=timeout)
    except (serial.SerialException, ValueError) as err:  # pyserial refused the URL's options
        raise KktError("error", f"{port} is not a valid network port ({err}); write socket://host:port") from None
