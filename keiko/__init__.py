"""keiko-backbone core: records, the streaming store, config, the process and the CLI."""

__version__ = "0.1.0"
