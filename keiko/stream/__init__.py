"""Stream workers: stages that consume one stream as a consumer group with checkpointed state."""
