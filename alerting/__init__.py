"""Alerting: routing, notification, remediation. Not built yet: see issue 6."""
