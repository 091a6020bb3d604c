"""The ``iiko_log`` check: which ФН the POS plugin's log shows for each register, against the ФН last read
from the register or its getad file (getad-service's "ФН validation", as a metric).

A ФН swapped without anyone re-reading the register leaves the exported ФН data stale; the POS log shows
the new ФН first. ``sitewatch_fn_log_mismatch`` is 1 while the two differ.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from exporter import schema as s
from exporter.checks.base import CheckContext, MetricSpec, Result, Sample
from exporter.checks.kkt import known_fns
from exporter.kkt import iikolog
from exporter.kkt.model import KktError

NAME = "iiko_log"
USES_SITE_DATA = True  # compares with the ФН numbers the site's kkt/getad checks read


def _folder(value: Any, path: str) -> str:
    text = s.file_path(what="the POS log folder, e.g. C:\\Users\\cashier\\AppData\\Roaming\\iiko\\CashServer\\logs")(
        value, path)
    folder = Path(text).expanduser()
    return str(folder if folder.is_absolute() else s.config_folder.get() / folder)


OPTIONS = s.struct({
    "folder": s.Field(_folder, required=True),
    "format": s.Field(s.choice("atol", "mitsu", "custom"), default="atol"),
    "mask": s.Field(s.string(what="text the log file's name contains")),
    "serial_key": s.Field(s.string(what="the text right before a register's serial number in the log")),
    "fn_key": s.Field(s.string(what="the text right before a ФН number in the log")),
    "multiline": s.Field(s.boolean()),
    "max_age": s.Field(s.duration(minimum=60), default=3 * 86400.0),
})
METRICS = (
    MetricSpec("sitewatch_fn_log_mismatch",
               "1 when the POS log shows a different ФН than the one last read from the register.",
               ("kkt", "fn", "log_fn")),
)


def target(options: dict[str, Any]) -> str:
    """What the check looks at, for people: the POS program's log folder."""
    return str(options["folder"])


def validate(options: dict[str, Any], check_timeout: float, path: str) -> None:
    if options["format"] == "custom" and not (options["mask"] and options["serial_key"] and options["fn_key"]):
        raise s.Invalid(s.join(path, "iiko_log"), "mask, serial_key and fn_key with format: custom")


def pattern(options: dict[str, Any]) -> iikolog.LogPattern:
    base = {"atol": iikolog.ATOL, "mitsu": iikolog.MITSU}.get(options["format"], iikolog.ATOL)
    return iikolog.LogPattern(
        mask=options["mask"] or base.mask, serial_key=options["serial_key"] or base.serial_key,
        fn_key=options["fn_key"] or base.fn_key,
        multiline=base.multiline if options["multiline"] is None else options["multiline"])


def _read(folder: Path, log_pattern: iikolog.LogPattern, max_age: float,
          serials: list[str]) -> tuple[Path, dict[str, str]]:
    log = iikolog.require_newest_log(folder, log_pattern)
    try:
        age = time.time() - log.stat().st_mtime
    except OSError as err:  # rotated away between listing and reading
        raise KktError("io", f"cannot read {log}: {err.strerror or err}") from None
    if age > max_age:
        raise KktError("stale", f"the newest log, {log.name}, was last written {age / 86400:.1f} days ago "
                                f"(max_age {max_age / 86400:g} days): is the POS running?")
    # With registers to look for, reading from the end stops once each was seen: big logs stay cheap.
    try:
        return log, iikolog.last_fns(log, log_pattern, serials=serials or None)
    except OSError as err:  # no rights to the POS user's profile, or the file vanished
        raise KktError("io", f"cannot read {log}: {err.strerror or err}") from None


async def run(options: dict[str, Any], context: CheckContext) -> Result:
    known = known_fns(context.site_memory)
    try:
        log, seen = await context.workers.run(_read, Path(options["folder"]), pattern(options), options["max_age"],
                                              sorted(known))
    except KktError as err:
        return Result.failed(err.reason, err.message)
    samples, details, mismatches = [], [], []
    for serial, log_fn in sorted(seen.items()):
        fn = known.get(serial)
        if fn is None:
            details.append(f"register №{serial}: the log shows ФН {log_fn}; no reading of this register to "
                           "compare with")
            continue
        differs = fn != log_fn
        samples.append(Sample("sitewatch_fn_log_mismatch", 1.0 if differs else 0.0,
                              (("kkt", serial), ("fn", fn), ("log_fn", log_fn))))
        if differs:
            mismatches.append(f"register №{serial}: the POS log shows ФН {log_fn}, but the register was last read "
                              f"with ФН {fn}: the ФН was replaced, re-read the register")
        details.append(f"register №{serial}: ФН {log_fn} in {log.name}" + (" (differs)" if differs else " (matches)"))
    figures = f"{len(seen)} register(s) in {log.name}"
    if mismatches:
        return Result.failed("fn_mismatch", "\n".join(mismatches), figures, samples, details)
    return Result(True, figures=figures, samples=samples, details=details)
