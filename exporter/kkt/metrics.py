"""The one place a `KktState` becomes the "ККТ and ФН" metrics of the contract, and a readable summary."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

from exporter.checks.base import MetricSpec, Sample
from exporter.kkt.model import PHASE_NAMES, WARNING_FLAGS, KktState

KKT_METRICS = (
    MetricSpec("sitewatch_kkt_up", "1 if the register (or its data file) was read successfully in the latest run.",
               ("kkt",)),
    MetricSpec("sitewatch_kkt_info", "The register's identity; always 1.",
               ("kkt", "vendor", "model", "firmware", "rnm", "inn", "organization", "ofd", "ffd", "fn")),
    MetricSpec("sitewatch_kkt_data_timestamp_seconds",
               "When the data was read from the device (for files: the time written in the file).", ("kkt",)),
    MetricSpec("sitewatch_kkt_clock_offset_seconds", "Register clock minus site clock.", ("kkt",)),
    MetricSpec("sitewatch_kkt_shift_expired", "1 while the register's shift has been open over 24 hours.", ("kkt",)),
    MetricSpec("sitewatch_kkt_licence_expiry_timestamp_seconds", "Expiry of each register licence.",
               ("kkt", "licence", "name")),
    MetricSpec("sitewatch_fn_expiry_timestamp_seconds", "The ФН's own expiry date.", ("kkt", "fn")),
    MetricSpec("sitewatch_fn_phase", "Life phase as the ФН reports it (1 ready, 3 fiscal, 7 closing, 15 archive).",
               ("kkt",)),
    MetricSpec("sitewatch_fn_warning", "1 while the ФН raises that warning flag.", ("kkt", "flag")),
    MetricSpec("sitewatch_fn_unsent_documents", "Documents not yet confirmed by the OFD.", ("kkt",)),
    MetricSpec("sitewatch_fn_oldest_unsent_document_timestamp_seconds",
               "Date of the first document not yet confirmed by the OFD (0 when none).", ("kkt",)),
    MetricSpec("sitewatch_fn_registrations_remaining", "Re-registrations the ФН still allows.", ("kkt",)),
)


def up_sample(kkt: str, up: bool) -> Sample:
    return Sample("sitewatch_kkt_up", 1.0 if up else 0.0, (("kkt", kkt),))


def state_samples(state: KktState, now: float | None = None) -> list[Sample]:
    """Every metric the state supports; what a source did not report is left out, not guessed."""
    now = time.time() if now is None else now
    kkt = (("kkt", state.serial),)
    fn = state.fn
    samples = [
        up_sample(state.serial, True),
        Sample("sitewatch_kkt_info", 1.0, (
            ("kkt", state.serial), ("vendor", state.vendor), ("model", state.model), ("firmware", state.firmware),
            ("rnm", state.rnm), ("inn", state.inn), ("organization", state.organization), ("ofd", state.ofd),
            ("ffd", state.ffd), ("fn", fn.serial if fn else ""))),
    ]
    if state.data_time is not None:
        samples.append(Sample("sitewatch_kkt_data_timestamp_seconds", state.data_time, kkt))
    if state.clock is not None and state.data_time is not None:
        samples.append(Sample("sitewatch_kkt_clock_offset_seconds", state.clock - state.data_time, kkt))
    if state.shift_expired is not None:
        samples.append(Sample("sitewatch_kkt_shift_expired", 1.0 if state.shift_expired else 0.0, kkt))
    for licence in state.licences:
        if licence.valid_until is not None:
            samples.append(Sample("sitewatch_kkt_licence_expiry_timestamp_seconds", licence.valid_until,
                                  (("kkt", state.serial), ("licence", licence.code), ("name", licence.name))))
    if fn is None:
        return samples
    if fn.expiry is not None:
        samples.append(Sample("sitewatch_fn_expiry_timestamp_seconds", fn.expiry, (("kkt", state.serial),
                                                                                    ("fn", fn.serial))))
    if fn.phase is not None:
        samples.append(Sample("sitewatch_fn_phase", float(fn.phase), kkt))
    if fn.flags is not None:
        samples += [Sample("sitewatch_fn_warning", 1.0 if fn.flags & bit else 0.0, (("kkt", state.serial),
                                                                                   ("flag", name)))
                    for bit, name in WARNING_FLAGS.items()]
    if fn.unsent_documents is not None:
        samples.append(Sample("sitewatch_fn_unsent_documents", float(fn.unsent_documents), kkt))
        oldest = fn.first_unsent_time if fn.unsent_documents and fn.first_unsent_time else 0.0
        samples.append(Sample("sitewatch_fn_oldest_unsent_document_timestamp_seconds", oldest, kkt))
    if fn.registrations_remaining is not None:
        samples.append(Sample("sitewatch_fn_registrations_remaining", float(fn.registrations_remaining), kkt))
    return samples


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.0f} days" if abs(days) >= 2 else f"{seconds / 3600:.0f} hours"


def summary(state: KktState, timezone: ZoneInfo | None = None, now: float | None = None) -> str:
    """One line a support engineer reads: model, serial, ФН, days to expiry, unsent documents, licences.

    Dates are shown in the site's time zone, as the register and its papers show them.
    """
    now = time.time() if now is None else now

    def _date(timestamp: float) -> str:
        return datetime.fromtimestamp(timestamp, timezone).strftime("%d.%m.%Y")

    def _calendar_days(timestamp: float) -> int:
        # "in 40 days" means 40 dates from today's, as on a calendar, not 39.4 x 24 hours.
        return (datetime.fromtimestamp(timestamp, timezone).date() - datetime.fromtimestamp(now, timezone).date()).days

    parts = [f"{state.model or state.vendor} №{state.serial}"]
    if state.baudrate is not None:
        parts.append(f"answered at {state.baudrate} baud")
    if not state.registered:
        parts.append("not registered")
    fn = state.fn
    if fn is not None:
        if fn.serial:
            parts.append(f"ФН {fn.serial}")
        if fn.expiry is not None:
            days = _calendar_days(fn.expiry)
            parts.append(f"ФН expires {_date(fn.expiry)} (in {days} days)" if fn.expiry > now
                         else f"ФН EXPIRED {_date(fn.expiry)}")
        if fn.phase is not None and fn.phase != 0x03:
            parts.append(f"phase 0x{fn.phase:02X} ({PHASE_NAMES.get(fn.phase, 'unknown')})")
        if fn.unsent_documents is not None:
            if fn.unsent_documents and fn.first_unsent_time:
                parts.append(f"{fn.unsent_documents} unsent to the OFD, oldest {_days(now - fn.first_unsent_time)} "
                             f"old")
            elif fn.unsent_documents:
                parts.append(f"{fn.unsent_documents} unsent to the OFD")
            else:
                parts.append("nothing unsent")
        if warnings := fn.warnings():
            parts.append("ФН warnings: " + ", ".join(warnings))
    for licence in state.licences:
        if licence.valid_until is not None and licence.valid_until - now < 400 * 86400:
            parts.append(f"licence {licence.code} «{licence.name}» until {_date(licence.valid_until)}")
    if state.shift_expired:
        parts.append("shift open over 24 h")
    return ", ".join(parts)
