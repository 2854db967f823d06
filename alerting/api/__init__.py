"""keiko's Alertmanager-compatible API v2 and its own alert actions (acknowledge, resolve)."""
