"""Config of the `analytics.incidents` stage."""

from __future__ import annotations

from pydantic import Field

from keiko.stream.config import BUCKET_DESCRIPTION, CheckpointConfig, StreamStageConfig
from keiko.units import Duration


class IncidentCheckpointConfig(CheckpointConfig):
    """Where the open incidents are saved."""

    bucket: str = Field(default="incidents", description=BUCKET_DESCRIPTION)


class IncidentsConfig(StreamStageConfig):
    """Groups anomaly events into incidents and ranks their root causes."""

    window: Duration = Field(
        default=300.0,
        gt=0,
        description="An anomaly joins an open incident when it comes within this long of "
        "the incident's latest anomaly (and is near it in the call graph); an incident "
        "with no new anomaly for this long is closed.",
    )
    hops: int = Field(
        default=2,
        ge=0,
        description="How near in the call graph (calls in either direction) an anomaly's "
        "service must be to the incident's services to join it. Services the graph does "
        "not know join by time alone.",
    )
    settle: Duration = Field(
        default=20.0,
        ge=0,
        description="Wait this long after an incident opens before the first analysis, so "
        "that the anomalies it causes elsewhere join first.",
    )
    reanalyse: Duration = Field(
        default=60.0,
        gt=0,
        description="At most this often, analyse an incident again when new anomalies "
        "joined it (each analysis writes a new version of the incident event).",
    )
    lookback: Duration = Field(
        default=600.0,
        gt=0,
        description="The normal period before the incident's first onset that the analysis "
        "compares against.",
    )
    max_metric_records: int = Field(
        default=20_000,
        gt=0,
        description="At most this many metric records are read for one analysis (the "
        "newest are kept when the window holds more).",
    )
    max_spans: int = Field(
        default=200_000,
        gt=0,
        description="At most this many spans are read for one analysis.",
    )
    top: int = Field(default=5, gt=0, le=50, description="Root-cause candidates per incident.")
    exemplars: int = Field(
        default=3, ge=0, le=20, description="Example traces linked to each anomaly."
    )
    max_open: int = Field(
        default=100,
        gt=0,
        description="Open incidents held at once; beyond it the oldest is closed (counted).",
    )
    checkpoint: IncidentCheckpointConfig = Field(default_factory=IncidentCheckpointConfig)
