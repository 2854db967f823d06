"""eBPF node probes (bcc on kernel tracepoints) and their cgroupfs/procfs fallback.

Layout: ``programs/*.c`` hold the BPF C text; ``probes/*.py`` load them and read their maps
(the ``Probe`` protocol in probe.py); ``component.py`` is the agent that runs them under
`keiko run` (``probes.ebpf`` in the config), attributes cgroups to containers and pods,
bounds label cardinality and writes OTLP metrics and TCP edges to the store.
"""
