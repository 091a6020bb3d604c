"""The buttons under a firing message ("✋ Беру", then "silence 1h / 4h / 24h" per alert), the data a pressed
button sends back, and the keyboard left after an edit.

A silence button's data names the duration and the alert's fingerprint, which is all Telegram's 64 bytes
allow; the labels for the silence are looked up in Alertmanager when the button is pressed. The take
button's data is only "take": the message it is under (its chat and message id) says what is taken.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from alertmanager.outbox import Item
from alertmanager.webhook import Alert

FINGERPRINT = re.compile(r"[0-9a-f]{1,32}")
CALLBACK_DATA = re.compile(r"sil:(\d{2,8}):([0-9a-f]{1,32})")
MAX_ROWS = 5  # alerts with buttons in one message; a digest of more is silenced with /silence
LABEL_ROOM = 22  # characters of the alert's name in its first button
TAKE = "take"
TAKE_BUTTON = {"text": "✋ Беру", "callback_data": TAKE}


def callback_data(seconds: float, fingerprint: str) -> str:
    return f"sil:{int(seconds)}:{fingerprint}"


def parse_callback(data: str) -> tuple[float, str] | None:
    """(seconds, fingerprint) of a silence button's data; None for anything else."""
    match = CALLBACK_DATA.fullmatch(data or "")
    return (float(match.group(1)), match.group(2)) if match else None


def button_label(seconds: float) -> str:
    """A duration as a button says it: hours up to a day ("24 ч", as on the buttons people know), days after."""
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400) * 24} ч" if seconds <= 86400 else f"{int(seconds // 86400)} д"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} ч"
    return f"{int(seconds // 60)} мин"


def keyboard(items: Sequence[Item], durations: Sequence[float]) -> dict[str, Any] | None:
    """An inline keyboard for a firing message: one row per alert (up to MAX_ROWS), one button per duration.

    Only alerts whose fingerprint is Alertmanager's (hex digits, so the data fits Telegram's 64 bytes) get
    buttons: a hand-made payload's odd fingerprint must cost the buttons, never the message.
    """
    if not durations:
        return None
    alerts: list[Alert] = []
    for item in items:
        if item.summary or not item.alert:  # the "… и ещё N" line stands for alerts it does not carry
            continue
        try:
            alert = Alert.from_json(item.alert)
        except ValueError:
            continue
        if not alert.firing or not FINGERPRINT.fullmatch(alert.fingerprint):
            continue
        if all(a.fingerprint != alert.fingerprint for a in alerts):
            alerts.append(alert)
    rows = []
    for alert in alerts[:MAX_ROWS]:
        name = alert.labels.get("alertname", "")
        if len(alerts) > 1:  # say which alert the row silences
            detail = alert.labels.get("kkt") or alert.labels.get("check") or alert.labels.get("site") or ""
            name = f"{name} {detail}".strip()
            name = name if len(name) <= LABEL_ROOM else name[:LABEL_ROOM - 1] + "…"
            first = f"🔕 {name}: {button_label(durations[0])}"
        else:
            first = f"🔕 Заглушить на {button_label(durations[0])}"
        row = [{"text": first, "callback_data": callback_data(durations[0], alert.fingerprint)}]
        row += [{"text": button_label(seconds), "callback_data": callback_data(seconds, alert.fingerprint)}
                for seconds in durations[1:]]
        rows.append(row)
    return {"inline_keyboard": rows} if rows else None


def with_take(silence: dict[str, Any] | None, take: bool) -> dict[str, Any] | None:
    """The keyboard of a firing message: the take button's row first (when `take`), then the silence rows."""
    rows = ([[dict(TAKE_BUTTON)]] if take else []) + list((silence or {}).get("inline_keyboard", []))
    return {"inline_keyboard": rows} if rows else None


def after_edit(silence: dict[str, Any] | None, firing: set[str], take: bool) -> dict[str, Any] | None:
    """The keyboard a sent message keeps: silence rows only for its alerts still firing (by fingerprint), and
    the take button while `take` (nobody took it yet, something still fires)."""
    rows = []
    for row in (silence or {}).get("inline_keyboard", []):
        pressed = parse_callback(row[0].get("callback_data", "")) if row else None
        if pressed is not None and pressed[1] in firing:
            rows.append(row)
    return with_take({"inline_keyboard": rows}, take)
