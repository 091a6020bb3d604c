"""One thing to do at a site, as the morning worklist, `/today` and the helpdesk hand-off see it.

Items are read from Prometheus (worklist.py), not from the alerts of the moment, so an alert muted at
night or silenced still appears. Each item carries the labels an alert about it would carry
(`alert_labels`): Alertmanager's routing tree, run on them, tells which routes' chats get the item,
exactly as it would route the alert. The alert name and severity are the rule's own (prometheus/rules/):
a check that is down is PcUnreachable for a ping, PortDown for a port..., and a severity follows the
rule's thresholds (a ФН expiring within 3 days is critical, within 30 a warning, later for information).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

DAY = 86400.0
OFD_BLOCKS_AFTER = 30 * DAY  # a ФН blocks the register 30 days after its oldest document the OFD has not confirmed

# The kinds, most pressing first; each names the alert rule that speaks of the same thing, and that rule's
# severity (when the item's own facts do not choose another: see `alertname` and `severity`).
KINDS = {
    "ofd_backlog": ("FnUnsentDocuments", "warning"),
    "fn_expiry": ("FnExpiring", "warning"),
    "site_silent": ("SiteNotReporting", "critical"),
    "check_down": ("CheckDown", "warning"),
    "kkt_not_read": ("KktDataStale", "warning"),
    "kodeks_licence": ("KodeksLicenceExpiring", "warning"),
    "kkt_licence": ("KktLicenceExpiring", "warning"),
    "catalog_error": ("KodeksMainPageError", "critical"),
}
# Items a technician has to go to the site for (the helpdesk gets these); a catalog in error or a
# licence is fixed from the office.
VISIT_KINDS = frozenset({"ofd_backlog", "fn_expiry", "site_silent", "check_down", "kkt_not_read"})
# The labels that tell one item of a kind at a site from another (a register, a drive, a check...).
IDENTITY = ("kkt", "fn", "check", "catalog", "name")
# Kinds about a register, which is the same register whichever check reads it (a kkt check and a getad
# log may both export one): its serial number, not the check, tells it.
REGISTER_KINDS = frozenset({"fn_expiry", "ofd_backlog", "kkt_not_read", "kkt_licence"})

# A check that is down, by its type: the rule that says so, and its severity (prometheus/rules/site.yml,
# kodeks.yml, kkt.yml). A page or Кодекс server stuck in maintenance has a rule of its own.
CHECK_ALERTS = {
    "ping": ("PcUnreachable", "critical"),
    "tcp": ("PortDown", "warning"),
    "http": ("MainPageBroken", "critical"),
    "kodeks": ("KodeksServerDown", "critical"),
    "kkt": ("KktNotAnswering", "warning"),
    "getad": ("CheckDown", "warning"),
    "iiko_log": ("CheckDown", "warning"),
}
MAINTENANCE_ALERTS = {"http": "PageMaintenanceLong", "kodeks": "KodeksMaintenanceLong"}
# Expiry rules with graded severities: (days left below which it is critical, then warning); later: info.
EXPIRY_GRADES = {"fn_expiry": (3, 30), "kodeks_licence": (2, 7)}
OFD_CRITICAL_AFTER = 20 * DAY  # FnUnsentDocuments is critical once the oldest document waits 20 days
SEVERITY_RANK = {"critical": 1, "warning": 2, "info": 3}


@dataclass(frozen=True)
class WorkItem:
    kind: str  # a key of KINDS
    site: str
    labels: dict[str, str] = field(default_factory=dict)  # the series' labels: client, distributor, kkt, fn...
    due: float | None = None  # Unix time it must be done by: a ФН's or licence's end, the OFD's 30 days
    since: float | None = None  # Unix time the trouble began: down since, last read, oldest unsent document
    count: float | None = None  # unsent documents
    reason: str | None = None  # a failed check's reason, as sitewatch_check_failure_info names it

    @property
    def needs_visit(self) -> bool:
        return self.kind in VISIT_KINDS

    @property
    def key(self) -> str:
        """A stable id: the same item found again tomorrow has the same key (the helpdesk creates it once).

        A ФН's key includes its number, so a replaced drive's successor is a new item; a date is not part
        of it, so an item whose due date was re-read stays the same item; nor is the check that reads a
        register, so a register two checks read is one item."""
        by_check = not (self.kind in REGISTER_KINDS and self.labels.get("kkt"))
        parts = [self.kind, self.site] + [f"{name}={self.labels.get(name, '') if name != 'check' or by_check else ''}"
                                          for name in IDENTITY]
        return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]

    @property
    def alertname(self) -> str:
        """The alert rule that speaks of this item."""
        if self.kind == "check_down":
            kind = self.labels.get("type", "")
            if self.reason == "maintenance" and kind in MAINTENANCE_ALERTS:
                return MAINTENANCE_ALERTS[kind]
            return CHECK_ALERTS.get(kind, KINDS["check_down"])[0]
        if self.kind == "catalog_error" and self.reason == "product_control":  # the bundle, not the main page
            return "KodeksBundleProblem"
        return KINDS[self.kind][0]

    def severity(self, now: float) -> str:
        """The severity the rule's alert would have at `now`: critical, warning or info."""
        if self.kind in EXPIRY_GRADES and self.due is not None:
            critical, warning = EXPIRY_GRADES[self.kind]
            left = self.due - now
            return "critical" if left < critical * DAY else "warning" if left < warning * DAY else "info"
        if self.kind == "ofd_backlog" and self.since is not None:
            return "critical" if now - self.since >= OFD_CRITICAL_AFTER else "warning"
        if self.kind == "check_down":
            if self.reason == "maintenance" and self.labels.get("type") in MAINTENANCE_ALERTS:
                return "warning"
            return CHECK_ALERTS.get(self.labels.get("type", ""), KINDS["check_down"])[1]
        if self.kind == "catalog_error":
            return "critical" if self.alertname == "KodeksMainPageError" else "warning"
        return KINDS[self.kind][1]

    def alert_labels(self, now: float | None = None) -> dict[str, str]:
        """The labels an alert about this item carries, for Alertmanager's routing tree. Without `now` the
        severity is the kind's usual one; with it, the one the rule would give at that moment."""
        labels = {k: v for k, v in self.labels.items() if v}
        severity = self.severity(now) if now is not None else KINDS[self.kind][1]
        labels.update(alertname=self.alertname, severity=severity, site=self.site)
        return labels

    def urgency(self, now: float) -> tuple[int, float, int]:
        """A sort key, most urgent first.

        First what is already late (a ФН or licence past its date, a register the OFD backlog has
        blocked), the longest late first; then by the rule's severity at `now`: critical, warning, info.
        Within a severity, what is broken comes before what is about to break, the longest broken first,
        then the soonest due; the kind (KINDS' order) breaks ties."""
        order = list(KINDS).index(self.kind)
        if self.due is not None and self.due <= now:
            return (0, self.due - now, order)
        rank = SEVERITY_RANK.get(self.severity(now), 3)
        moment = self.due if self.due is not None else self.since if self.since is not None else now
        return (rank, moment - now, order)
