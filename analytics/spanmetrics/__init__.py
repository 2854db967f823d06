"""Span metrics (calls and duration histograms per service and operation) and the service
graph (client -> server edges from spans, merged with eBPF TCP edges), as one stage."""
