"""The cost of one full check (drift + quality + error slices + bias) of a window against the
version's reference profile, beside bare Evidently on the same frames.

    python bench/checks.py [--layouts 22 100] [--sizes 10000 50000 200000 1000000]
                           [--repeat 3] [--evidently-max 50000] [--first-check]

Layouts: 22 = 20 numeric + 2 categorical features (+ the prediction, categorical), 100 = 100
numeric features. Windows of N rows against an equally large reference (1M: 200k reference).
Each (layout, size) runs in its own process so that its peak RSS is its own; bare Evidently
(`DataDriftPreset` + `Accuracy`, what a new user would run) runs in another process, for sizes
up to --evidently-max (it takes minutes above). The window read is excluded (bench/ingest.py
and storage/ measure it). Printed per size:

    full check N rows: S s          (median of --repeat, the window read excluded)
    ratio full/evidently N: X       (where bare Evidently ran in the same invocation)

plus the profile fit, the calibration (drift: 200 bootstrap rounds from the profile; figures:
200 rounds), how much the drift normal ranges' upper bounds move from 12 to 200 rounds, and
peak RSS. --first-check measures what a new version waits for with 64 columns (62 numeric +
2 categorical, 50k window and reference): profile fit + drift and figures calibration.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GROUP, TASK, CLASSES = "groups.sex", "classification", ["0", "1"]
ROUNDS = 200


def layout(name: str) -> tuple[list[str], list[str]]:
    """Numeric features and categorical features of a layout."""
    if name == "22":
        return [f"f{i}" for i in range(20)], ["plan", "region"]
    if name == "64":
        return [f"f{i}" for i in range(62)], ["plan", "region"]
    return [f"f{i}" for i in range(int(name))], []


def generate(rng: np.random.Generator, n: int, shifted: bool, numeric, categorical):
    """n rows; the current window has 5 numeric features and `plan` shifted."""
    data: dict[str, Any] = {
        col: rng.normal(0.4 if shifted and i < 5 else 0.0, 1.0 + 0.1 * (i % 20), n)
        for i, col in enumerate(numeric)
    }
    if "plan" in categorical:
        plan_p = [0.1, 0.2, 0.2, 0.2, 0.3] if shifted else [0.3, 0.2, 0.2, 0.2, 0.1]
        data["plan"] = rng.choice(list("abcde"), n, p=plan_p)
        data["region"] = rng.choice([f"r{i}" for i in range(8)], n)
    sex = rng.choice(["F", "M"], n, p=[0.4, 0.6])
    target = (data["f0"] - data["f1"] + rng.normal(0, 1, n) > 0).astype(int)
    wrong = rng.random(n) < np.where(sex == "F", 0.22, 0.10)
    frame = pd.DataFrame(data)
    frame[GROUP] = sex
    frame["target"] = target.astype(str)
    frame["prediction"] = np.where(wrong, 1 - target, target).astype(str)
    return frame


def frames(name: str, size: int):
    numeric, categorical = layout(name)
    rng = np.random.default_rng(size)
    ref_rows = min(size, 200_000)
    ref = generate(rng, ref_rows, False, numeric, categorical)
    cur = generate(rng, size, True, numeric, categorical)
    return numeric, categorical, ref, cur


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit(ref: pd.DataFrame, numeric, categorical):
    """What a new version pays once: the profile (with quality and slice edges)."""
    from watcher.checks.profile import fit_profile
    from watcher.checks.quality import direct_quality
    from watcher.checks.slices import bin_edges

    edges = {c: bin_edges(ref[c], 5) for c in numeric}
    quality = direct_quality(ref, TASK, CLASSES)
    return fit_profile(ref, numeric, [*categorical, "prediction"], quality=quality, edges=edges)


def calibrate_all(profile, ref: pd.DataFrame, size: int, rounds: int = ROUNDS):
    """Drift ranges from the profile, quality and gap ranges from the reference's labels."""
    from watcher.checks.figures_calibration import calibrate_figures_fast
    from watcher.checks.profile_calibration import calibrate_profile

    started = time.perf_counter()
    drift = calibrate_profile(profile, size, rounds=rounds, sigmas=3.0)
    drift_s = time.perf_counter() - started
    started = time.perf_counter()
    calibrate_figures_fast(
        ref[["target", "prediction", GROUP]],  # what the figures read (baseline.calibrate_figures)
        size,
        task=TASK,
        classes=CLASSES,
        attributes=[GROUP],
        min_group_rows=50,
        rounds=rounds,
        sigmas=3.0,
        contiguous=False,
    )
    return drift, drift_s, time.perf_counter() - started


def full_check(profile, cur: pd.DataFrame, numeric, categorical) -> dict[str, float]:
    """The stages one check runs, timed: drift from the profile, quality, slices, bias."""
    from watcher.checks.fast_drift import fast_drift
    from watcher.checks.groups import gap_p_value
    from watcher.checks.quality import gaps, group_quality, numpy_quality
    from watcher.checks.slices import find_error_slices

    times: dict[str, float] = {}

    def timed(stage: str, fn):
        started = time.perf_counter()
        out = fn()
        times[stage] = time.perf_counter() - started
        return out

    timed("drift", lambda: fast_drift(profile, cur, numeric, [*categorical, "prediction"]))
    timed("quality", lambda: numpy_quality(cur, TASK, CLASSES))
    edges = {c: np.asarray(e) for c, e in profile.edges.items()}
    timed(
        "error slices",
        lambda: find_error_slices(
            cur,
            cur["prediction"] != cur["target"],
            numeric=numeric,
            categorical=[*categorical, GROUP],
            edges=edges,
            min_rows=30,
            alpha=0.01,
        ),
    )

    def bias():
        found = gaps(group_quality(cur, GROUP, TASK, CLASSES, 50), TASK)
        return {g: gap_p_value(cur, GROUP, g, f, TASK, CLASSES) for g, f in found.items()}

    timed("bias", bias)
    times["total"] = sum(times.values())
    return times


def spread_change(profile, size: int) -> float:
    """Median over columns of |high(12 rounds) - high(200)| / (high(200) - mean(200))."""
    from watcher.checks.profile_calibration import calibrate_profile

    few = calibrate_profile(profile, size, rounds=12, sigmas=3.0, seed=1)
    many = calibrate_profile(profile, size, rounds=ROUNDS, sigmas=3.0, seed=1)
    moves = [
        abs(few.columns[c].high - r.high) / max(r.high - r.mean, 1e-12)
        for c, r in many.columns.items()
        if c in few.columns
    ]
    return float(statistics.median(moves))


def run_warden(name: str, size: int, repeat: int) -> dict[str, Any]:
    numeric, categorical, ref, cur = frames(name, size)
    started = time.perf_counter()
    profile = fit(ref, numeric, categorical)
    fit_s = time.perf_counter() - started
    _, drift_cal_s, figures_cal_s = calibrate_all(profile, ref, size)
    checks = [full_check(profile, cur, numeric, categorical) for _ in range(repeat)]
    stages = {k: statistics.median(c[k] for c in checks) for k in checks[0]}
    return {
        "fit_s": fit_s,
        "drift_cal_s": drift_cal_s,
        "figures_cal_s": figures_cal_s,
        "stages": stages,
        "spread_12_vs_200": spread_change(profile, size) if size <= 200_000 else None,
        "rss_mb": rss_mb(),
    }


def run_evidently(name: str, size: int, repeat: int) -> dict[str, Any]:
    from evidently import BinaryClassification, Dataset, Report
    from evidently.metrics import Accuracy
    from evidently.presets import DataDriftPreset

    from watcher.checks.drift import definition

    numeric, categorical, ref, cur = frames(name, size)
    cols = [*numeric, *categorical, "prediction"]
    dd = definition(numeric, [*categorical, "prediction"])
    task = BinaryClassification(target="target", prediction_labels="prediction", pos_label="1")
    qd = definition([], ["prediction", "target"], classification=[task])
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        Report([DataDriftPreset()]).run(
            Dataset.from_pandas(cur[cols], data_definition=dd),
            Dataset.from_pandas(ref[cols], data_definition=dd),
        )
        Report([Accuracy()]).run(
            Dataset.from_pandas(cur[["target", "prediction"]], data_definition=qd), None
        )
        seconds.append(time.perf_counter() - started)
    return {"seconds": statistics.median(seconds), "rss_mb": rss_mb()}


def first_check() -> dict[str, Any]:
    """A new version with 64 columns: profile fit + drift and figures calibration (50k)."""
    numeric, categorical, ref, _ = frames("64", 50_000)
    started = time.perf_counter()
    profile = fit(ref, numeric, categorical)
    fit_s = time.perf_counter() - started
    _, drift_s, figures_s = calibrate_all(profile, ref, 50_000)
    return {"fit_s": fit_s, "drift_cal_s": drift_s, "figures_cal_s": figures_s, "rss_mb": rss_mb()}


def child(args: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh process (its own peak RSS); its JSON result."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(name: str, size: int, ours: dict[str, Any], bare: dict[str, Any] | None) -> None:
    stages = ours["stages"]
    parts = ", ".join(f"{k} {v:.3f}" for k, v in stages.items() if k != "total")
    print(f"[{name} columns, {size:,} rows, reference {min(size, 200_000):,}]")
    print(f"full check {size} rows: {stages['total']:.3f} s  ({parts}; window read excluded)")
    print(
        f"  profile fit {ours['fit_s']:.2f} s; calibration {ROUNDS} rounds: drift "
        f"{ours['drift_cal_s']:.2f} s, quality+gaps {ours['figures_cal_s']:.2f} s; "
        f"peak RSS {ours['rss_mb']:.0f} MB"
    )
    if ours["spread_12_vs_200"] is not None:
        print(
            f"  drift normal range's upper bound, 12 vs {ROUNDS} rounds: moves by "
            f"{ours['spread_12_vs_200']:.0%} of its 200-round width (median over columns)"
        )
    if bare is not None:
        ratio = stages["total"] / bare["seconds"]
        print(
            f"  bare Evidently (DataDriftPreset + Accuracy): {bare['seconds']:.2f} s, "
            f"peak RSS {bare['rss_mb']:.0f} MB"
        )
        print(f"ratio full/evidently {size}: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=["22", "100"])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000, 1_000_000]
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evidently-max", type=int, default=50_000)
    parser.add_argument("--first-check", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, name, size, repeat = args.child
        for module in ("profile", "profile_calibration", "figures_calibration", "fast_drift"):
            __import__(f"watcher.checks.{module}")  # imports excluded from the timings
        runner = {"warden": run_warden, "evidently": run_evidently}.get(kind)
        result = first_check() if kind == "first" else runner(name, int(size), int(repeat))  # type: ignore[misc]
        print(json.dumps(result))
        return
    print(f"bench/checks.py: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for name in args.layouts:
        for size in args.sizes:
            if name == "100" and size > 200_000:
                continue  # the target for 100 columns is at 200k
            ours = child(["warden", name, str(size), str(args.repeat)])
            bare = None
            if size <= args.evidently_max:
                bare = child(["evidently", name, str(size), str(args.repeat)])
            report(name, size, ours, bare)
    if args.first_check:
        got = child(["first", "64", "50000", "1"])
        total = got["fit_s"] + got["drift_cal_s"] + got["figures_cal_s"]
        print(
            f"first check of a new version, 64 columns, 50k: {total:.2f} s (profile fit "
            f"{got['fit_s']:.2f}, drift calibration {got['drift_cal_s']:.2f}, quality+gaps "
            f"calibration {got['figures_cal_s']:.2f}; peak RSS {got['rss_mb']:.0f} MB)"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
