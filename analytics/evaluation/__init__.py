"""Offline evaluation of the anomaly detectors against public benchmarks (NAB)."""
