"""The alert engine: alert state, aggregation groups and their timers, escalation,
correlation with keiko's incidents, and the stage that drives them from the store."""
