#!/usr/bin/env python3
"""Evaluate keiko's root-cause ranking on the public cases in /work/shared/data/rca.

Converts every case into a case directory under ``--cases-dir`` (a `keiko rca` input plus
``truth.json``), reads it back with ``analytics.rca.caseio.read_case``, ranks it in-process
with ``analytics.rca.rank.rank`` (the code behind `keiko rca`) and prints AC@1, AC@3 and
Avg@5 = (AC@1 + ... + AC@5) / 5 per data set and group, next to the published numbers the
data sets' READMEs quote. For the first case of each data set it also runs the real
`keiko rca CASE_DIR --at T --json` in a subprocess and checks it returns the same top 5,
so the numbers are those of the CLI.

Protocols (see the converters' docstrings for the details):

* Sock Shop (``analytics.rca.cases.sockshop``, RCAEval ASE'24): normal rows re-timed to
  end 1 s before the anomalous ones, ``--at`` = the first anomalous time (tΔ = 0),
  ``_lat_50``/``_lat_99`` dropped; a returned service counts as its owner with ``-db``
  dropped, duplicates removed; groups CPU and MEM; published figure Avg@5.
* PetShop (``analytics.rca.cases.petshop``, upstream ``rca_task.py``): each train and test
  issue after its scenario's re-timed ``noissue`` period, the call graph from the
  adjacency matrix (row calls column), ``--at`` = the issue window's third row (the row
  upstream analyses, the first step after ``target.timestamp``); groups scenario x target
  metric; published figures top-1 and top-3 (= AC@1, AC@3). temporal_traffic1/2 lack
  their normal-operation file in this copy and are listed as not scorable.

    .venv/bin/python benchmarks/rca_eval.py                       # both data sets
    .venv/bin/python benchmarks/rca_eval.py --dataset sockshop --misses
    .venv/bin/python benchmarks/rca_eval.py --json > rca.json

Exit codes: 0 evaluated, 1 the CLI answered differently from the in-process ranking,
2 bad input (data directory missing or not as its README describes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from analytics.rca import cases as labelled  # noqa: E402
from analytics.rca.cases import petshop, sockshop  # noqa: E402
from analytics.rca.rank import rank  # noqa: E402

DATA = Path("/work/shared/data/rca")
CASES_DIR = ROOT / "benchmarks" / "out" / "rca_cases"
KS = (1, 2, 3, 4, 5)
# Sock Shop 1, Avg@5 (CPU, MEM): RCAEval ASE'24 Table 5, quoted in rcd-sockshop/README.md.
SOCKSHOP_PUBLISHED: list[tuple[str, float, float]] = [
    ("BARO [tΔ=0]", 0.99, 0.99),
    ("NSigma [tΔ=0]", 0.98, 0.99),
    ("CausalRCA", 0.84, 0.84),
    ("CIRCA [tΔ=0]", 0.70, 0.80),
    ("RCD [tΔ=0]", 0.63, 0.66),
    ("ε-Diagnosis [tΔ=0]", 0.50, 0.55),
    ("Dummy (random)", 0.36, 0.33),
]
# PetShop anomaly-traversal baseline (top-1, top-3), upstream notebook, quoted in
# petshop/README.md; the temporal scenarios are reported together there.
PETSHOP_PUBLISHED: dict[tuple[str, str], tuple[float, float]] = {
    ("low_traffic", "latency"): (0.571, 0.571),
    ("low_traffic", "availability"): (0.833, 1.000),
    ("high_traffic", "latency"): (0.571, 0.786),
    ("high_traffic", "availability"): (0.667, 1.000),
    ("temporal_traffic", "latency"): (1.000, 1.000),
    ("temporal_traffic", "availability"): (0.750, 1.000),
}


@dataclass
class Result:
    """One ranked case: what came back and where the truth landed (None: not in the list)."""

    dataset: str
    name: str
    group: tuple[str, ...]
    truth: str
    ranked: list[str]
    position: int | None
    seconds: float


def main(argv: list[str] | None = None) -> int:
    """Convert, rank, score, print."""
    args = _parser().parse_args(argv)
    datasets = ["sockshop", "petshop"] if args.dataset == "all" else [args.dataset]
    started = time.perf_counter()
    results: list[Result] = []
    unscorable: list[petshop.Unscorable] = []
    checks: list[dict[str, Any]] = []
    try:
        for dataset in datasets:
            first = True
            for item, directory in _converted(dataset, args, unscorable):
                results.append(_rank(item))
                if first and not args.no_cli_check:
                    checks.append(_cli_check(item, directory))
                first = False
    except (ValueError, OSError) as exc:
        print(f"rca_eval: {exc} (--data must hold rcd-sockshop/ and petshop/)", file=sys.stderr)
        return 2
    total = time.perf_counter() - started
    report = _report(results, unscorable, checks, total)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print(report, results, args.misses)
    return 1 if any(not c["same"] for c in checks) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=("sockshop", "petshop", "all"), default="all")
    parser.add_argument("--data", type=Path, default=DATA, help=f"default {DATA}")
    parser.add_argument(
        "--cases-dir", type=Path, default=CASES_DIR, help=f"where case directories go ({CASES_DIR})"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable results")
    parser.add_argument("--misses", action="store_true", help="list the cases not ranked first")
    parser.add_argument(
        "--no-cli-check", action="store_true", help="skip the `keiko rca` subprocess check"
    )
    return parser


def _converted(
    dataset: str, args: argparse.Namespace, unscorable: list[petshop.Unscorable]
) -> Iterator[tuple[labelled.LabelledCase, Path]]:
    """Each case converted, saved as a case directory and read back from it."""
    if dataset == "sockshop":
        items: Iterator[labelled.LabelledCase] = sockshop.cases(args.data / "rcd-sockshop")
    else:
        items = petshop.cases(args.data / "petshop" / "dataset", unscorable)
    for item in items:
        directory = labelled.save(args.cases_dir, item)
        yield labelled.load(directory), directory


def _mapper(dataset: str) -> Callable[[str], str]:
    return sockshop.truth_service if dataset == "sockshop" else str


def _rank(item: labelled.LabelledCase) -> Result:
    """The full ranking (every service), mapped to the ground truth's naming, deduplicated."""
    services = int(item.case.metrics["service"].nunique())
    started = time.perf_counter()
    candidates = rank(item.case, item.at, top=services)
    seconds = time.perf_counter() - started
    mapped = [_mapper(item.dataset)(c.service) for c in candidates]
    ranked = list(dict.fromkeys(mapped))
    position = ranked.index(item.truth) + 1 if item.truth in ranked else None
    return Result(item.dataset, item.name, item.group, item.truth, ranked, position, seconds)


def _cli_check(item: labelled.LabelledCase, directory: Path) -> dict[str, Any]:
    """Run `keiko rca --json` on the case directory; same top 5 as rank() in-process?"""
    command = [sys.executable, "-m", "keiko.cli", "rca", str(directory)]
    command += ["--at", repr(item.at), "--top", "5", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    expected = [c.to_json() for c in rank(item.case, item.at, top=5)]
    got: list[dict[str, Any]] = json.loads(done.stdout) if done.returncode == 0 else []
    key = [(c["service"], c.get("instance", ""), c["score"]) for c in expected]
    same = done.returncode == 0 and key == [
        (c["service"], c.get("instance", ""), c["score"]) for c in got
    ]
    return {
        "case": f"{item.dataset}/{item.name}",
        "command": " ".join(command[2:]).replace("keiko.cli", "keiko", 1),
        "same": same,
        "cli_top5": [c["service"] for c in got],
        "rank_top5": [c["service"] for c in expected],
        "stderr": done.stderr.strip().splitlines()[-1:] if done.stderr else [],
    }


def _scores(positions: list[int | None]) -> dict[str, float]:
    hits = np.array([p if p is not None else 10**9 for p in positions])
    ac = {k: float(np.mean(hits <= k)) for k in KS}
    return {"AC@1": ac[1], "AC@3": ac[3], "Avg@5": float(np.mean(list(ac.values())))}


def _report(
    results: list[Result],
    unscorable: list[petshop.Unscorable],
    checks: list[dict[str, Any]],
    total: float,
) -> dict[str, Any]:
    groups: dict[tuple[str, tuple[str, ...]], list[int | None]] = {}
    for r in results:
        groups.setdefault((r.dataset, r.group), []).append(r.position)
        groups.setdefault((r.dataset, ("all",)), []).append(r.position)
    order = sorted(groups, key=lambda k: (k[0] != "sockshop", k[1] == ("all",), k[1]))
    rows = [
        {"dataset": d, "group": list(g), "n": len(groups[(d, g)])}
        | _scores(groups[(d, g)])
        | _published(d, g)
        for d, g in order
    ]
    return {
        "results": rows,
        "not_scorable": [
            {"dataset": "petshop", "case": u.name, "group": list(u.group), "reason": u.reason}
            for u in unscorable
        ],
        "cli_check": checks,
        "cases": [
            {
                "dataset": r.dataset,
                "case": r.name,
                "truth": r.truth,
                "position": r.position,
                "top5": r.ranked[:5],
            }
            for r in results
        ],
        "total_seconds": round(total, 3),
        "rank_mean_ms": round(1000 * float(np.mean([r.seconds for r in results])), 3)
        if results
        else None,
    }


def _published(dataset: str, group: tuple[str, ...]) -> dict[str, Any]:
    if dataset == "sockshop" and group[0] in ("cpu", "mem"):
        col = 1 if group[0] == "cpu" else 2
        return {"published_avg5": {m[0]: m[col] for m in SOCKSHOP_PUBLISHED}}
    if dataset == "petshop" and len(group) == 2:
        scenario = "temporal_traffic" if group[0].startswith("temporal") else group[0]
        top = PETSHOP_PUBLISHED.get((scenario, group[1]))
        if top:
            return {"published_traversal": {"top-1": top[0], "top-3": top[1]}}
    return {}


def _print(report: dict[str, Any], results: list[Result], misses: bool) -> None:
    out = sys.stdout
    out.write(
        f"{'dataset':<9} {'group':<27} {'n':>3} {'AC@1':>6} {'AC@3':>6} {'Avg@5':>6}  published\n"
    )
    for row in report["results"]:
        out.write(
            f"{row['dataset']:<9} {' / '.join(row['group']):<27} {row['n']:>3} "
            f"{row['AC@1']:>6.3f} {row['AC@3']:>6.3f} {row['Avg@5']:>6.3f}  {_pub_text(row)}\n"
        )
    unscorable: dict[str, list[str]] = {}
    for u in report["not_scorable"]:
        unscorable.setdefault(u["reason"], []).append(u["case"])
    for reason, names in unscorable.items():
        out.write(f"not scorable: {len(names)} petshop issues ({reason}): {', '.join(names)}\n")
    for check in report["cli_check"]:
        verdict = "same top 5" if check["same"] else "DIFFERENT top 5"
        out.write(f"CLI check ({check['command']}): {verdict}: {check['cli_top5']}\n")
    if misses:
        for r in results:
            if r.position != 1:
                out.write(
                    f"miss: {r.dataset}/{r.name} truth {r.truth} at {r.position}; "
                    f"top 3 {r.ranked[:3]}\n"
                )
    out.write(
        f"{len(results)} cases in {report['total_seconds']:.1f} s (conversion, I/O, CLI check "
        f"included); ranking {report['rank_mean_ms']} ms per case on average\n"
    )


def _pub_text(row: dict[str, Any]) -> str:
    if "published_avg5" in row:
        shown = ", ".join(f"{m.split(' ')[0]} {v:.2f}" for m, v in row["published_avg5"].items())
        return f"Avg@5 {shown}"
    if "published_traversal" in row:
        p = row["published_traversal"]
        return f"traversal baseline top-1 {p['top-1']:.3f}, top-3 {p['top-3']:.3f}"
    return ""


if __name__ == "__main__":
    sys.exit(main())
