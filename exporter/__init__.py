"""sitewatch site exporter: runs a site's checks on a schedule and serves them as Prometheus metrics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sitewatch")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
