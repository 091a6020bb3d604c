"""Check types by name. A new check type is one module with the shape described in `base`, listed here.

The list lives in its own module, not in the package's ``__init__``, so importing `exporter.checks.base`
(as the ККТ drivers' metric tables do) does not import every check type, and with them those drivers.
"""

from exporter.checks import getad, http, iiko_log, kkt, kodeks, ping, tcp

CHECK_TYPES = {module.NAME: module for module in (ping, tcp, http, kodeks, kkt, getad, iiko_log)}
