"""keiko's config: one YAML file, validated at start-up, with ``KEIKO_*`` overrides."""

from keiko.config.load import ConfigError, load_config, validate
from keiko.config.model import ApiConfig, KeikoConfig, LoggingConfig

__all__ = ["ApiConfig", "ConfigError", "KeikoConfig", "LoggingConfig", "load_config", "validate"]
