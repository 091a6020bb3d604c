"""The ``getad`` check: reads the per-register JSON files that getad-service, POSRelayd and shtrih-kkt
write, so a firm gets ФН and licence alerts from the files its tills already produce.

Each register file becomes the same state and metrics as a register read over its port; the file's own
``current_time`` is the data timestamp, so a file that stopped being refreshed shows as stale. A broken
file fails the check with reason ``parse`` naming the file, and the other files still count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exporter import schema as s
from exporter.checks.base import CheckContext, Result, Sample
from exporter.checks.kkt import known_fns
from exporter.kkt import getad
from exporter.kkt import metrics as kkt_metrics
from exporter.kkt.model import KktError

NAME = "getad"


def _folder(value: Any, path: str) -> str:
    text = s.file_path(what="the folder of getad JSON files (its `date` folder)")(value, path)
    folder = Path(text).expanduser()
    return str(folder if folder.is_absolute() else s.config_folder.get() / folder)


OPTIONS = s.struct({
    "folder": s.Field(_folder, required=True),
})
METRICS = kkt_metrics.KKT_METRICS

def target(options: dict[str, Any]) -> str:
    """What the check looks at, for people: getad-service's folder."""
    return str(options["folder"])



async def run(options: dict[str, Any], context: CheckContext) -> Result:
    folder = Path(options["folder"])
    try:
        files = await context.workers.run(getad.read_getad_folder, folder, context.timezone)
    except KktError as err:
        return Result.failed(err.reason, err.message)
    samples: list[Sample] = []
    details: list[str] = []
    broken: list[KktError] = []
    registers = 0
    for file in files:
        if file.error is not None:
            broken.append(file.error)
            samples.append(kkt_metrics.up_sample(file.path.stem, False))
            details.append(f"{file.path.name}: unreadable: {file.error.message}")
        elif file.state is not None:
            registers += 1
            state = file.state
            samples += kkt_metrics.state_samples(state)
            details.append(f"{file.path.name}: {kkt_metrics.summary(state, context.timezone)}")
            if state.fn is not None and state.fn.serial:
                known_fns(context.site_memory)[state.serial] = state.fn.serial
        elif file.station is not None:
            details.append(f"{file.path.name}: a station whose register did not answer getad-service "
                           f"(host {file.station.get('hostname') or '?'})")
    figures = f"{registers} register file(s) in {folder}"
    if broken:  # the other files' registers are still exported
        return Result.failed(broken[0].reason, "\n".join(error.message for error in broken), figures, samples,
                             details)
    if not files:
        return Result.failed("not_found", f"no JSON files in {folder}: is getad-service writing there?",
                             figures, samples, details)
    if registers == 0:
        return Result.failed("not_found", f"getad-service found no register on this PC: {folder} holds only "
                                          "its station file, written when no register answers", figures,
                             samples, details)
    return Result(True, figures=figures, samples=samples, details=details)
