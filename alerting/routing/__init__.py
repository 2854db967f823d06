"""Alertmanager-compatible routing: the config models, the route tree, time intervals and the
loader of an ``alertmanager.yml``. Pure logic: no I/O beyond reading the file, no clocks
(callers pass ``now`` in unix seconds)."""
