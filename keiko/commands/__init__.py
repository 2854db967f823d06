"""The `keiko` command groups: each module has ``register(subparsers)``."""
