"""Check types by name. A new check type is one module with the shape described in `base`, listed here."""

from exporter.checks import getad, http, iiko_log, kkt, kodeks, ping, tcp

CHECK_TYPES = {module.NAME: module for module in (ping, tcp, http, kodeks, kkt, getad, iiko_log)}
