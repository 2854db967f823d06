"""`keiko forecast` and `keiko scale-sim` end to end through the installed entry point."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

KEIKO = str(Path(sys.executable).with_name("keiko"))


def write_series(path: Path, days: float = 3, step: float = 300.0) -> Path:
    k = np.arange(int(days * 86400 / step))
    values = 200 + 100 * np.sin(2 * np.pi * k * step / 86400)
    values += np.random.default_rng(2).normal(0, 5, len(k))
    with open(path, "w", newline="") as handle:
        handle.write("timestamp,value\n")
        for t, v in zip(1_700_006_400 + k * step, values, strict=True):
            handle.write(f"{int(t)},{v:.3f}\n")
    return path


def keiko(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KEIKO, *args], capture_output=True, text=True, input=stdin, timeout=120, check=False
    )


def test_forecast_writes_csv_and_reports_mase_and_coverage(tmp_path: Path) -> None:
    src = write_series(tmp_path / "in.csv")
    out = tmp_path / "out.csv"
    done = keiko("forecast", str(src), "--horizon", "12", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "MASE" in done.stderr and "coverage" in done.stderr and "seasonal-naive" in done.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["timestamp", "value", "forecast", "lower", "upper"]
    assert len(rows) == 1 + 3 * 288
    assert rows[1][0] == "1700006400" and rows[1][2] == ""  # nothing to forecast from yet
    last = [float(x) for x in rows[-1][1:]]
    assert last[2] <= last[1] <= last[3] or abs(last[1] - last[0]) < 50


def test_forecast_to_stdout_with_json_scores(tmp_path: Path) -> None:
    src = write_series(tmp_path / "in.csv", days=1)
    done = keiko("forecast", "-", "-H", "3", "-o", "-", "--json", stdin=src.read_text())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("timestamp,value,forecast,lower,upper\n")
    scores = json.loads(done.stderr)
    assert scores["horizon_steps"] == 3 and scores["baseline"].startswith("naive")
    assert 0 < scores["mase"] < 2 and 0 <= scores["coverage_80"] <= 1
    assert len(list(csv.reader(io.StringIO(done.stdout)))) == 289


def test_forecast_says_why_a_score_is_missing(tmp_path: Path) -> None:
    short = tmp_path / "short.csv"
    short.write_text("timestamp,value\n1700006400,1\n1700006700,2\n")
    done = keiko("forecast", str(short), "--horizon", "5", "-o", str(tmp_path / "o.csv"))
    assert done.returncode == 0, done.stderr
    assert "MASE not scored" in done.stderr and "shorter than the horizon" in done.stderr
    assert "coverage not scored" in done.stderr and "nan" not in done.stderr
    flat = tmp_path / "flat.csv"
    flat.write_text("timestamp,value\n" + "".join(f"{1700006400 + 300 * k},3\n" for k in range(50)))
    done = keiko("forecast", str(flat), "--horizon", "3", "-o", str(tmp_path / "o.csv"))
    assert "MASE undefined over 47 rows" in done.stderr and "makes no error" in done.stderr


def test_bad_input_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,abc\n")
    done = keiko("forecast", str(bad), "--horizon", "1")
    assert done.returncode == 2
    assert f"{bad}: line 3" in done.stderr and "not a number" in done.stderr
    missing = keiko("scale-sim", str(tmp_path / "nope.csv"), "--capacity", "5")
    assert missing.returncode == 2 and "nope.csv" in missing.stderr
    assert keiko("forecast", str(bad), "--horizon", "0").returncode == 2


def test_scale_sim_json_and_text(tmp_path: Path) -> None:
    src = write_series(tmp_path / "in.csv")
    done = keiko("scale-sim", str(src), "--capacity", "30", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("hpa_under_min", "pred_under_min", "hpa_replica_h", "pred_replica_h", "target_met"):
        assert key in result
    assert result["duration_h"] == 72.0
    text = keiko("scale-sim", str(src), "--capacity", "30", "--horizon", "10m", "--startup", "2m")
    assert text.returncode == 0 and "under-provisioned" in text.stdout and "HPA" in text.stdout
    # running the predictive policy cooler costs it replica-hours; the HPA is unchanged
    cool = keiko("scale-sim", str(src), "--capacity", "30", "--utilisation", "0.6", "--json")
    assert cool.returncode == 0, cool.stderr
    cooler = json.loads(cool.stdout)
    assert cooler["hpa_replica_h"] == result["hpa_replica_h"]
    assert cooler["pred_replica_h"] > result["pred_replica_h"]
    bad = keiko("scale-sim", str(src), "--capacity", "30", "--utilisation", "1.5")
    assert bad.returncode == 2 and "--utilisation" in bad.stderr


def test_help_defines_under_provisioned_minutes() -> None:
    done = keiko("scale-sim", "--help")
    assert done.returncode == 0
    flat = " ".join(done.stdout.split())
    assert "under-provisioned when the demand exceeds ready pods x capacity" in flat
    assert "examples:" in done.stdout
    assert "MASE" in keiko("forecast", "--help").stdout


def test_scale_sim_reports_what_no_controller_reaches(tmp_path: Path) -> None:
    # a short trace that opens at 100 and jumps to 600 half a minute in: every instant the
    # HPA misses comes before pods ordered on seeing the jump can be ready
    src = tmp_path / "opening.csv"
    rows = [f"{1_700_000_000 + 10 * k},{100 if k < 3 else 600}" for k in range(120)]
    src.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    text = keiko("scale-sim", str(src), "--capacity", "100")
    assert text.returncode == 0, text.stderr
    flat = " ".join(text.stdout.split())
    assert "beyond a controller sized for the largest demand seen so far" in flat
    assert "no controller gets the ratio below 1.00 (the target is out of its reach here)" in flat
    done = json.loads(keiko("scale-sim", str(src), "--capacity", "100", "--json").stdout)
    assert done["hpa_unreachable_min"] == done["hpa_under_min"] > 0
    assert done["best_possible_ratio"] == 1.0
    # 20 minutes of data: shorter than the advisor's hour of history, and said so
    assert "the forecast was never trusted: the series is shorter than --min-history" in flat
    assert done["fallback_share"] == 1.0 and done["under_ratio"] == 1.0
    sooner = keiko("scale-sim", str(src), "--capacity", "100", "--min-history", "5m")
    assert "never trusted" not in sooner.stdout


def test_scale_sim_replays_the_advisors_trust_default() -> None:
    from analytics.forecast.config import WorkloadScaling
    from analytics.forecast.sim import SimConfig

    advisor = WorkloadScaling(capacity_per_replica=1.0).min_history_s
    assert SimConfig(capacity=1.0).min_history_s == advisor
    assert f"default {advisor / 3600:g}h" in keiko("scale-sim", "--help").stdout


def test_scale_sim_replays_the_advisors_sizing_defaults() -> None:
    from analytics.forecast.config import WorkloadScaling
    from analytics.forecast.sim import SimConfig

    advisor = WorkloadScaling(capacity_per_replica=1.0)
    sim = SimConfig(capacity=1.0)
    assert sim.scaling().predictive_utilisation == advisor.predictive_utilisation
    assert sim.scaling().floor_utilisation == advisor.floor_utilisation
    assert sim.scaling().persistence == advisor.persistence
    text = " ".join(keiko("scale-sim", "--help").stdout.split())
    assert f"(default {advisor.predictive_utilisation:g})" in text
    assert f"(default {advisor.floor_utilisation:g};" in text


def test_scale_sim_without_the_nowcast_plans_a_step_staler(tmp_path: Path) -> None:
    src = write_series(tmp_path / "in.csv")
    runs = [
        json.loads(keiko("scale-sim", str(src), "--capacity", "30", *extra, "--json").stdout)
        for extra in ((), ("--no-nowcast",))
    ]
    with_nowcast, without = runs
    assert with_nowcast["hpa_replica_h"] == without["hpa_replica_h"]  # the HPA is unchanged
    # a forecast a step staler errs more, so its calibrated bound holds more pods
    assert without["pred_replica_h"] > with_nowcast["pred_replica_h"]
    assert "--no-nowcast" in keiko("scale-sim", "--help").stdout


def test_scale_sim_caps_replicas_and_says_when_the_peak_needs_more(tmp_path: Path) -> None:
    src = write_series(tmp_path / "in.csv", days=1)
    # capacity in the wrong units: the series needs ~300 pods, the cap is 50
    done = keiko("scale-sim", str(src), "--capacity", "1", "--max-replicas", "50", "--json")
    assert done.returncode == 0, done.stderr
    capped = json.loads(done.stdout)
    assert capped["hpa_replica_h"] <= 50 * capped["duration_h"] + 1e-9
    assert capped["pred_replica_h"] <= 50 * capped["duration_h"] + 1e-9
    text = keiko("scale-sim", str(src), "--capacity", "1", "--max-replicas", "50")
    assert "the peak needs more than --max-replicas (50)" in text.stdout
    # a value no pod count can serve is a warning, not a crash
    src.write_text("timestamp,value\n" + "".join(f"{60 * i},{1e300}\n" for i in range(100)))
    huge = keiko("scale-sim", str(src), "--capacity", "1")
    assert huge.returncode == 0, huge.stderr
    assert "more than --max-replicas (1000)" in huge.stdout
    bad = keiko(
        "scale-sim", str(src), "--capacity", "1", "--min-replicas", "9", "--max-replicas", "3"
    )
    assert bad.returncode == 2 and "--min-replicas 9 exceeds --max-replicas 3" in bad.stderr


def test_forecast_reads_millisecond_timestamps(tmp_path: Path) -> None:
    src = write_series(tmp_path / "in.csv", days=1)
    rows = src.read_text().splitlines()
    ms = tmp_path / "ms.csv"
    ms.write_text(
        "\n".join([rows[0], *(f"{r.split(',')[0]}000,{r.split(',')[1]}" for r in rows[1:])])
    )
    done = keiko("forecast", str(ms), "--horizon", "3", "-o", "-", "--json")
    assert done.returncode == 0, done.stderr
    assert "read as unix milliseconds" in done.stderr
    assert json.loads(done.stderr.splitlines()[-1])["step_s"] == 300.0


def test_forecast_horizon_as_a_duration(tmp_path: Path) -> None:
    src = write_series(tmp_path / "in.csv", days=1)  # 5-minute rows
    steps = keiko("forecast", str(src), "--horizon", "12", "-o", "-", "--json")
    hour = keiko("forecast", str(src), "--horizon", "1h", "-o", "-", "--json")
    assert hour.returncode == 0, hour.stderr
    assert hour.stdout == steps.stdout  # the same forecasts
    assert json.loads(hour.stderr.splitlines()[-1])["horizon_steps"] == 12
    odd = keiko("forecast", str(src), "--horizon", "7m", "-o", "-", "--json")
    assert "is 1.4 steps of 300 s: 1 used" in odd.stderr
    bad = keiko("forecast", str(src), "--horizon", "soon", "-o", "-")
    assert bad.returncode == 2 and "neither a whole number of steps nor a duration" in bad.stderr


def test_scale_sim_says_when_the_hpa_is_never_short(tmp_path: Path) -> None:
    # a smooth daily cycle of Poisson counts: the HPA at 70% is never short, the predictive
    # policy at 87.5% is, a few minutes, for fewer replica-hours: "half of none" cannot be met
    rng = np.random.default_rng(1)
    k = np.arange(2 * 1440)
    values = rng.poisson(100 * (1 + 0.6 * np.sin(2 * np.pi * k / 1440)))
    src = tmp_path / "calm.csv"
    rows = (f"{1_700_000_000 + 60 * i},{v}\n" for i, v in zip(k, values, strict=True))
    src.write_text("timestamp,value\n" + "".join(rows))
    done = keiko("scale-sim", str(src), "--capacity", "16")
    assert done.returncode == 0, done.stderr
    assert "the HPA is never short here, so no ratio can be halved" in done.stdout
    cooler = keiko("scale-sim", str(src), "--capacity", "16", "--utilisation", "0.8", "--json")
    assert json.loads(cooler.stdout)["pred_under_min"] == 0.0  # as the message says


def write_request_log(path: Path, minutes: int = 90) -> Path:
    """One row per request, as the Azure LLM trace has them: a steady 4 requests/s, then 12/s
    for the last 20 minutes. It starts inside the step of 1_700_158_620 and ends inside the
    step after ``minutes``."""
    rng = np.random.default_rng(4)
    t, rows = 1_700_158_620.25, []
    while t < 1_700_158_620 + minutes * 60:
        rate = 4.0 if t < 1_700_158_620 + (minutes - 20) * 60 else 12.0
        t += rng.exponential(1 / rate)
        rows.append(f"{t:.6f},{int(rng.integers(100, 5000))},{int(rng.integers(5, 500))}\n")
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(rows))
    return path


def test_request_logs_are_read_with_arrivals(tmp_path: Path) -> None:
    log = write_request_log(tmp_path / "trace.csv")
    plain = keiko("scale-sim", str(log), "--capacity", "2")
    assert plain.returncode == 2 and "--arrivals STEP" in plain.stderr
    sim = keiko("scale-sim", str(log), "--arrivals", "10s", "--capacity", "2", "--json")
    assert sim.returncode == 0, sim.stderr
    assert "counted into 539 steps of 10 s" in sim.stderr
    result = json.loads(sim.stdout)
    assert result["hpa_replica_h"] > 0 and result["duration_h"] == 1.5
    out = tmp_path / "fc.csv"
    fc = keiko("forecast", str(log), "--arrivals", "1m", "-H", "5m", "-o", str(out))
    assert fc.returncode == 0, fc.stderr
    rows = list(csv.reader(out.open()))[1:]
    assert len(rows) == 89 and rows[0][0] == "1700158680"
    assert 3 < float(rows[10][1]) < 5 and 10 < float(rows[-1][1]) < 14  # requests per second
    detect = keiko("detect", str(log), "--arrivals", "1m", "-o", "-")
    assert detect.returncode == 0, detect.stderr
    assert detect.stdout.count("\n") == 90 and "step from 17001" in detect.stderr
    assert keiko("detect", str(log), "--arrivals", "0s").returncode == 2
