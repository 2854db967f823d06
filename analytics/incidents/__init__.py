"""Incidents: anomalies grouped by time and call-graph neighbourhood, analysed for their
root causes once they settle, written to the events stream."""
