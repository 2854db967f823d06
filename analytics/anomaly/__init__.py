"""Online anomaly detection: per-series detectors vectorised over series, calibrated scores."""
