"""Predictive scaling advice from the metrics stream: workload request rates -> replicas."""
