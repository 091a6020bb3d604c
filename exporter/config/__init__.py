"""Site exporter configuration: YAML reading, validation and the resulting model."""

from exporter.config.loader import ConfigError, load_config, open_targets
from exporter.config.model import CheckConfig, Config, Schedule, Site

__all__ = ["CheckConfig", "Config", "ConfigError", "Schedule", "Site", "load_config", "open_targets"]
