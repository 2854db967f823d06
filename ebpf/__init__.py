"""eBPF node probes (bcc). Not built yet: see issue 3."""
