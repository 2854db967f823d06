"""Scaling advisor cost: observations advised per second and state per workload.

The advisor (``analytics.forecast.advisor.ScalingAdvisor``) plans again at every rate
observation, from a nowcast (a copy of the workload's forecaster that has learnt the step
being filled as far as seen), so its cost per observation is what a cluster's workload
count and scrape interval multiply. Single-threaded: ``--workloads`` workloads, each
observed every ``--interval`` seconds with a daily pattern plus noise (60-s steps, the
default), first through ``--warm`` hours so every forecast is trusted, then timed over
``--hours`` more.

    .venv/bin/python benchmarks/advisor_throughput.py [--workloads 200] [--interval 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analytics.forecast.advisor import ScalingAdvisor
from analytics.forecast.config import AdvisorConfig, WorkloadScaling

T0 = 1_700_000_000.0


def rates(t: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Each workload's request rate at ``t``: a daily pattern, its own level, and noise."""
    levels = 50.0 + 10.0 * np.arange(n) % 500
    daily = 1.0 + 0.5 * np.sin(2 * np.pi * (t % 86400) / 86400 + np.arange(n) * 0.1)
    return levels * daily * rng.lognormal(0.0, 0.1, n)


def feed(adv: ScalingAdvisor, names: list[str], start: float, end: float, interval: float) -> int:
    """Observe every workload every ``interval`` s in [start, end); observations made."""
    rng = np.random.default_rng(int(start))
    count = 0
    for t in np.arange(start, end, interval):
        for name, rate in zip(names, rates(float(t), len(names), rng), strict=True):
            adv.observe(name, float(t), float(rate), replicas=4)
            count += 1
    return count


def main() -> int:
    """Warm up, time, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=int, default=200)
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between scrapes")
    parser.add_argument("--warm", type=float, default=2.0, help="hours before timing")
    parser.add_argument("--hours", type=float, default=1.0, help="hours timed")
    args = parser.parse_args()
    scaling = WorkloadScaling(capacity_per_replica=20.0)
    adv = ScalingAdvisor(AdvisorConfig(defaults=scaling, max_workloads=args.workloads))
    names = [f"ns/workload-{i}" for i in range(args.workloads)]
    warm_end = T0 + args.warm * 3600
    started = time.perf_counter()
    feed(adv, names, T0, warm_end, args.interval)
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    count = feed(adv, names, warm_end, warm_end + args.hours * 3600, args.interval)
    elapsed = time.perf_counter() - started
    modes = [a.mode for a in (adv.latest(n) for n in names) if a is not None]
    per_workload = len(adv.snapshot()) / args.workloads
    print(
        f"{args.workloads} workloads observed every {args.interval:g} s: {count:,} observations "
        f"in {elapsed:.1f} s = {count / elapsed:,.0f} observations/s "
        f"({1e6 * elapsed / count:.0f} us each; warm-up {warm_s:.0f} s)"
    )
    print(
        f"predictive at the end: {modes.count('predictive')} of {len(modes)}; "
        f"checkpoint {per_workload / 1024:.1f} KiB per workload"
    )
    load = args.workloads / args.interval / (count / elapsed)
    print(f"one core keeps up with {1 / load:,.0f}x this load ({100 * load:.1f}% of a core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
