"""Metric points from the store's `metrics` stream, as numbered series the detectors can score."""
