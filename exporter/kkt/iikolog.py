"""Finds, in a POS plugin log (iikoFront's ATOL and Mitsu plugins), the ФН number last shown for each register
serial: getad-service's "ФН validation", as data, so a replaced ФН shows up before the register is read again.

Plugin logs grow to hundreds of megabytes and the answer sits near their end, so a log is read backwards in
blocks with bounded memory and the reading stops as soon as every wanted serial is found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from exporter.kkt.model import KktError

BLOCK_SIZE = 1 << 20
# A "line" longer than this (a dumped binary, a log without line ends) is looked at in pieces, so memory stays
# bounded whatever the file holds.
MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True)
class LogPattern:
    """How one plugin writes the pair. The keys are the literal text right before the digits, quotes included,
    as getad-service's `serialNumber_key` / `fnNumber_key` settings are."""

    mask: str  # part of the file name; the file must also end in ".log"
    serial_key: str
    fn_key: str
    # False: the serial and, later on the same line, the ФН. True: a line with the serial, and the first later
    # line with a ФН belongs to it, unless a line with another serial comes first.
    multiline: bool


# "… serialNumber=00123456790012, … fnNumber=7380440700067159 …"
ATOL = LogPattern("AtolFiscalRegister", "serialNumber=", "fnNumber=", multiline=False)
# The plugin logs the device's replies: <OK VER='…' SERIAL='065001234567890' …/>, later <OK FN='9999…' …>.
MITSU = LogPattern("MitsuCRPlugin", "SERIAL='", "FN='", multiline=True)


def newest_log(folder: Path, pattern: LogPattern) -> Path | None:
    """The most recently modified `*.log` whose name contains the mask; None when there is none."""
    newest: tuple[float, str, Path] | None = None
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return None
    for path in entries:
        if pattern.mask not in path.name or not path.name.lower().endswith(".log"):
            continue
        try:
            if not path.is_file():
                continue
            modified = path.stat().st_mtime
        except OSError:  # rotated away between the listing and the stat
            continue
        candidate = (modified, path.name, path)
        if newest is None or candidate[:2] > newest[:2]:
            newest = candidate
    return newest[2] if newest else None


def require_newest_log(folder: Path, pattern: LogPattern) -> Path:
    """`newest_log`, or KktError("not_found") saying which folder and mask gave nothing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KktError("not_found", f"log folder {folder} does not exist")
    path = newest_log(folder, pattern)
    if path is None:
        raise KktError("not_found", f"no *.log file with {pattern.mask!r} in its name in {folder}")
    return path


def last_fns(path: Path, pattern: LogPattern, max_bytes: int | None = None, *,
             serials: Iterable[str] | None = None, block_size: int = BLOCK_SIZE) -> dict[str, str]:
    """For every serial in the log, the ФН number of its last occurrence (for the multi-line form: of the last
    serial line that has its ФН line after it).

    `max_bytes` limits the reading to the end of the file; with `serials` only those are looked for and the
    reading stops once all of them are found. Lines are UTF-8 with undecodable bytes replaced (iikoFront logs
    carry cp1251 fragments).
    """
    wanted = None if serials is None else set(serials)
    if wanted is not None and not wanted:
        return {}
    serial_key = pattern.serial_key.encode("utf-8")
    fn_key = pattern.fn_key.encode("utf-8")
    digits_after_serial_key = re.compile(re.escape(pattern.serial_key) + "([0-9]+)")
    digits_after_fn_key = re.compile(re.escape(pattern.fn_key) + "([0-9]+)")
    pair_on_one_line = re.compile(re.escape(pattern.serial_key) + "([0-9]+).*?" + re.escape(pattern.fn_key)
                                  + "([0-9]+)")
    found: dict[str, str] = {}
    # Multi-line form, read backwards: the ФН of the nearest ФН line below, with no serial line in between.
    fn_below: str | None = None
    # closing(): stopping early must close the file now, not whenever the generator is collected.
    with closing(_lines_backwards(Path(path), max_bytes, block_size, (serial_key, fn_key))) as lines:
        for line in lines:
            serial = fn = None
            if pattern.multiline:
                if serial_key in line:
                    match = digits_after_serial_key.search(line.decode("utf-8", "replace"))
                    if match:
                        serial, fn, fn_below = match[1], fn_below, None
                if serial is None and fn_key in line:
                    match = digits_after_fn_key.search(line.decode("utf-8", "replace"))
                    if match:
                        fn_below = match[1]
            elif serial_key in line and fn_key in line:
                match = pair_on_one_line.search(line.decode("utf-8", "replace"))
                if match:
                    serial, fn = match[1], match[2]
            if serial is None or fn is None or serial in found or (wanted is not None and serial not in wanted):
                continue
            found[serial] = fn
            if wanted is not None and wanted <= found.keys():
                break
    return found


def _lines_backwards(path: Path, max_bytes: int | None, block_size: int,
                     keys: tuple[bytes, ...]) -> Iterator[bytes]:
    """The file's lines, last first, as bytes. Lines holding none of `keys` may be left out: a block without
    any key is not split into lines at all, which keeps a pass over hundreds of megabytes fast."""
    if block_size < 1:
        raise ValueError("block_size must be positive")
    with open(path, "rb") as log:
        end = log.seek(0, 2)  # what is appended while reading is for the next run
        stop = 0 if max_bytes is None else max(0, end - max_bytes)
        first_line_whole = True
        if stop > 0:  # the range is cut by max_bytes: its first line counts only if the cut follows a line end
            log.seek(stop - 1)
            first_line_whole = log.read(1) == b"\n"
        position = end
        carry = b""  # the end of a line whose start lies in a block not read yet
        while position > stop:
            start = max(stop, position - block_size)
            log.seek(start)
            block = log.read(position - start)
            position = start
            data = block + carry if carry else block
            at_start_of_range = position <= stop
            if not any(key in data for key in keys):
                if at_start_of_range:
                    return
                first_break = data.find(b"\n")
                carry = data if first_break < 0 else data[:first_break]
            else:
                lines = data.split(b"\n")
                carry = b"" if at_start_of_range else lines.pop(0)
                if at_start_of_range and not first_line_whole:
                    lines.pop(0)
                yield from reversed(lines)
            if len(carry) > MAX_LINE_BYTES:
                yield carry
                carry = b""
