"""What the exporter remembers about each check between runs: latest result, counters, debounced state.

`sitewatch_check_up` is debounced: it goes to 0 only after `failure_threshold` failed runs in a row and
back to 1 after `success_threshold` passed runs, so one lost packet does not page anyone. Before the first
run a check is assumed up, so a check that is down from the start shows 0 after `failure_threshold` runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from exporter.checks.base import Result
from exporter.config.model import CheckConfig

log = logging.getLogger("sitewatch.checks")


@dataclass
class CheckState:
    check: CheckConfig
    labels: tuple[tuple[str, str], ...]  # site, the site's labels, check, type
    last: Result | None = None
    up: bool = True
    runs: int = 0
    failures: int = 0
    last_success_at: float = 0.0
    failures_in_a_row: int = 0
    successes_in_a_row: int = 0
    memory: dict[str, Any] = field(default_factory=dict)  # what a check keeps between its runs
    # Its series as text, per family, and the `runs` they were rendered for (see exporter.exposition).
    rendered: tuple[int, dict[str, str]] | None = field(default=None, repr=False, compare=False)
    _last_logged: tuple[bool, str | None] | None = field(default=None, repr=False)

    def record(self, result: Result) -> None:
        if result.success:
            self.successes_in_a_row += 1
            self.failures_in_a_row = 0
            self.last_success_at = result.finished_at
            if not self.up and self.successes_in_a_row >= self.check.schedule.success_threshold:
                self.up = True
                self._log_up_change()
        else:
            self.failures += 1
            self.failures_in_a_row += 1
            self.successes_in_a_row = 0
            if self.up and self.failures_in_a_row >= self.check.schedule.failure_threshold:
                self.up = False
                self._log_up_change()
        self.last = result
        # Counted last: a reader that sees the new count sees the whole new state (exporter.exposition renders
        # without the scheduler's lock, and tags what it rendered with the count it read first).
        self.runs += 1
        self._log_outcome_change(result)

    def _log_outcome_change(self, result: Result) -> None:
        # One line when a check starts failing, changes its reason or recovers; not one per run.
        outcome = (result.success, result.reason)
        if outcome == self._last_logged:
            return
        if result.success:
            if self._last_logged is not None:
                log.info("event=check_passed site=%s check=%s %s", self.check.site_id, self.check.name,
                         _quoted("figures", result.figures))
        else:
            log.warning("event=check_failed site=%s check=%s reason=%s %s", self.check.site_id, self.check.name,
                        result.reason, _quoted("message", result.message))
        self._last_logged = outcome

    def _log_up_change(self) -> None:
        log.warning("event=check_%s site=%s check=%s after_runs=%d", "up" if self.up else "down",
                    self.check.site_id, self.check.name,
                    self.successes_in_a_row if self.up else self.failures_in_a_row)



def _quoted(key: str, value: str) -> str:
    value = "; ".join(value.splitlines())  # one log line per event
    return f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
