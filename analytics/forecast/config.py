"""Config models of the forecaster and the scaling advisor (pydantic, unknown keys refused)."""

from __future__ import annotations

from pydantic import Field, model_validator

from keiko.store.config import Strict


class ForecasterConfig(Strict):
    """How one series is forecast: step, smoothing, seasonality, robustness, intervals."""

    step_s: float = Field(
        default=60.0, gt=0, description="Fixed step the input is resampled to (s)."
    )
    level_half_life_s: float = Field(
        default=600.0, gt=0, description="Half-life of the level's exponential smoothing (s)."
    )
    trend_half_life_s: float = Field(
        default=3600.0,
        gt=0,
        description="Half-life of the trend's smoothing (s); longer is steadier.",
    )
    trend_damping_s: float = Field(
        default=1800.0,
        gt=0,
        description="Time constant over which an extrapolated trend dies out (s).",
    )
    season_s: float = Field(default=86400.0, gt=0, description="Season length (s): one day.")
    season_bins: int = Field(
        default=144, ge=4, le=288, description="Bins of the seasonal profile (144: 10 min each)."
    )
    season_half_life_days: float = Field(
        default=3.0, gt=0, description="Half-life of a profile bin, in visits (days)."
    )
    clip: float = Field(
        default=3.0, gt=0, description="Residuals beyond this many scales are clipped (spikes)."
    )
    shift_after: int = Field(
        default=6,
        ge=1,
        description="Same-sign clipped residuals in a row after which a level shift is adopted.",
    )
    coverage: float = Field(
        default=0.8, gt=0, lt=1, description="Nominal coverage of the prediction interval."
    )
    residual_window: int = Field(
        default=240, ge=20, le=512, description="Recent h-step residuals kept for the interval."
    )


class WorkloadScaling(Strict):
    """Scaling settings of one workload."""

    capacity_per_replica: float | None = Field(
        default=None,
        gt=0,
        description="Rate one replica serves at its latency objective; null: learnt from "
        "observed throughput against latency (needs replicas and latency in observations).",
    )
    target_utilisation: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="Fraction of capacity to plan for while reactive (as the HPA's target).",
    )
    predictive_utilisation: float = Field(
        default=0.875,
        gt=0,
        le=1,
        description="Fraction of capacity to plan the forecast peak for while the forecast is "
        "trusted: it is ahead of the load, so it can run hotter than the reactive target.",
    )
    floor_utilisation: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="While the forecast is trusted, never fewer replicas than the rate seen "
        "now needs at this fraction of capacity; above that the forecast is behind the load "
        "and the rate seen is sized at target_utilisation. Hotter than the plan: the rate "
        "seen is known, the forecast peak is not. Lower it for traffic that swings within a "
        "forecast step.",
    )
    headroom: float = Field(
        default=0.0, ge=0, description="Extra fraction on top of the forecast peak."
    )
    peak_quantile: float = Field(
        default=0.9,
        gt=0,
        lt=1,
        description="Size for this quantile of the forecast peak (from past peak errors).",
    )
    peak_errors: int = Field(
        default=120,
        ge=20,
        le=1024,
        description="Recent peak forecast errors the quantile is taken over (a few hours at "
        "1-minute steps: short enough to follow quiet and busy spells).",
    )
    persistence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of the gap up to the latest rate that the forecast peak takes when "
        "that rate is above it. The forecaster clips a rise as a spike until it has lasted "
        "its shift_after steps; the plan should not wait that long (0: the model alone; 1: "
        "never below the latest rate).",
    )
    surprise_scales: float = Field(
        default=6.0,
        gt=0,
        description="A step this many of the forecaster's robust error scales above its "
        "forecast is a surprising rise (twice the forecaster's outlier clip): the next plan "
        "is sized from the peak errors that followed past surprises, not the calm ones.",
    )
    horizon_s: float = Field(
        default=60.0,
        gt=0,
        description="Look-ahead after the start-up delay (s): the plan covers "
        "[now, now + startup + horizon]. The time to the next advice (the interval between a "
        "workload's rate observations) is enough: every observation plans again, and a longer "
        "look-ahead only holds pods for later peaks.",
    )
    startup_s: float = Field(
        default=60.0, ge=0, description="Time for a new pod to become ready (s)."
    )
    scale_in_stabilisation_s: float = Field(
        default=0.0,
        ge=0,
        description="Scale in only to the highest recommendation of this window (s). The plan "
        "already covers the start-up a removed pod would need to come back, so none is needed.",
    )
    reactive_scale_in_s: float = Field(
        default=300.0,
        ge=0,
        description="While the advice is reactive, scale in only to its highest of this window "
        "(s): the HPA's own default, which keiko keeps because the HPA carrying the advice out "
        "is told to use none.",
    )
    min_replicas: int = Field(default=1, ge=0, description="Lower bound on the advice.")
    max_replicas: int = Field(default=100, ge=1, description="Upper bound on the advice.")
    max_relative_width: float = Field(
        default=5.0,
        gt=0,
        description="Trust the forecast only while (upper - lower) / max(peak, one replica's "
        "rate at the target utilisation) is at most this.",
    )
    min_history_s: float = Field(
        default=3600.0,
        ge=0,
        description="Trust the forecast only after this much history (s), and once enough "
        "peak forecasts have been scored for the conformal rank of ``peak_quantile`` (9 for "
        "0.9). An hour: trusted after 5 minutes instead, the plan missed more than the HPA "
        "in the first hour of Alibaba's 1-minute request series (README, forecasting).",
    )
    latency_objective_s: float | None = Field(
        default=None,
        gt=0,
        description="Latency at which a replica counts as saturated when learning capacity; "
        "null: 1.5 x the latency seen at low load.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> WorkloadScaling:
        check_replica_bounds(self.min_replicas, self.max_replicas)
        return self


def check_replica_bounds(low: int, high: int) -> None:
    """Raise (naming both keys) when ``min_replicas`` exceeds ``max_replicas``."""
    if low > high:
        raise ValueError(f"min_replicas ({low}) exceeds max_replicas ({high})")


class AdvisorConfig(Strict):
    """The scaling advisor: defaults for every workload, overrides by name, bounds."""

    step_s: float = Field(
        default=60.0, gt=0, description="Step the request rates are resampled to (s)."
    )
    defaults: WorkloadScaling = Field(
        default_factory=WorkloadScaling, description="Settings of workloads not named below."
    )
    workloads: dict[str, WorkloadScaling] = Field(
        default_factory=dict, description="Per-workload settings, replacing the defaults."
    )
    forecaster: ForecasterConfig = Field(
        default_factory=ForecasterConfig, description="Forecaster settings (step_s is overridden)."
    )
    max_workloads: int = Field(
        default=1000, ge=1, description="Workloads tracked at once; the least recently seen goes."
    )

    def for_workload(self, name: str) -> WorkloadScaling:
        """The settings of ``name``."""
        return self.workloads.get(name, self.defaults)
