"""The cost of one full check (drift + quality + bias) of a window against its reference.

    python bench/checks.py [--sizes 10000 50000] [--repeat 3]

The target is ≤ 2 s per check of a 50k window (20 numeric + 2 categorical features, an equally
large reference) on 2 cores; where Evidently alone costs more than that, the run says what part
is ours and what part is Evidently's. Building a registry version and a DB window for such
a model is a project of its own, so this calls the building blocks `ModelChecker` uses, in its
order and with its arguments, on generated frames. Evidently's entry points (Dataset.from_pandas,
Report.run, Snapshot.dict) are wrapped with a clock to split the time; a bare Evidently
DataDriftPreset + Accuracy run on the same frames is the baseline measured in the same run.
Calibration (once per version and size bucket, not per check) is reported per round.
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from watcher.checks.calibration import calibrate  # noqa: E402
from watcher.checks.drift import definition, drift_report, parse_drift, run_drift  # noqa: E402
from watcher.checks.quality import direct_quality, evidently_quality, gaps, group_quality  # noqa: E402
from watcher.checks.slices import bin_edges, find_error_slices  # noqa: E402

console = Console(width=120)
NUMERIC = [f"f{i}" for i in range(20)]
CATEGORICAL = ["plan", "region"]  # 5 and 8 levels
DRIFT_CATEGORICAL = [*CATEGORICAL, "prediction"]  # baseline.drift_columns, classification
GROUP, TASK, CLASSES = "groups.sex", "classification", ["0", "1"]
CHECK = ("drift", "quality", "error slices", "bias")  # the stages one full check runs
MB = 1024 * 1024


def generate(rng: np.random.Generator, n: int, shifted: bool) -> pd.DataFrame:
    """n rows; the current window has 5 numeric features and `plan` shifted."""
    data: dict[str, Any] = {
        col: rng.normal(0.4 if shifted and i < 5 else 0.0, 1.0 + 0.1 * i, n)
        for i, col in enumerate(NUMERIC)
    }
    plan_p = [0.1, 0.2, 0.2, 0.2, 0.3] if shifted else [0.3, 0.2, 0.2, 0.2, 0.1]
    data["plan"] = rng.choice(list("abcde"), n, p=plan_p)
    data["region"] = rng.choice([f"r{i}" for i in range(8)], n)
    sex = rng.choice(["F", "M"], n, p=[0.4, 0.6])
    target = (data["f0"] - data["f1"] + rng.normal(0, 1, n) > 0).astype(int)
    wrong = rng.random(n) < np.where(sex == "F", 0.22, 0.10)  # ~85 % accurate, worse for F
    frame = pd.DataFrame(data)
    frame[GROUP] = sex
    frame["target"] = target.astype(str)
    frame["prediction"] = np.where(wrong, 1 - target, target).astype(str)
    return frame


class EvidentlyClock:
    """Accumulates the seconds spent inside Evidently's entry points (outermost call only)."""

    def __init__(self) -> None:
        self.seconds, self._depth = 0.0, 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - started

        return timed

    def install(self) -> None:
        from evidently import Dataset, Report
        from evidently.core.report import Snapshot

        Report.run = self.wrap(Report.run)  # type: ignore[method-assign]
        Snapshot.dict = self.wrap(Snapshot.dict)  # type: ignore[method-assign]
        Dataset.from_pandas = classmethod(self.wrap(Dataset.from_pandas.__func__))  # type: ignore[method-assign,assignment]


def drift(current: pd.DataFrame, reference: pd.DataFrame) -> Any:
    return run_drift(current, reference, NUMERIC, DRIFT_CATEGORICAL)


def bias(frame: pd.DataFrame) -> dict[str, float]:
    """BiasCheck.run for one attribute: group quality, gaps, and each gap's p-value."""
    from watcher.checks.groups import gap_p_value

    found = gaps(group_quality(frame, GROUP, TASK, CLASSES, 50), TASK)
    return {g: gap_p_value(frame, GROUP, g, f, TASK, CLASSES) for g, f in found.items()}


def stages(ref: pd.DataFrame, cur: pd.DataFrame, tmp: Path) -> dict[str, Callable[[], Any]]:
    from evidently import BinaryClassification, Dataset, Report
    from evidently.metrics import Accuracy
    from evidently.presets import DataDriftPreset

    from watcher.checks.groups import direct_gaps

    cfg = SimpleNamespace(task=TASK, checks=SimpleNamespace(min_group_rows=50))  # what it reads
    edges = {c: bin_edges(ref[c], 5) for c in NUMERIC}  # once per version (Baseline)
    snapshot = drift(cur, ref).snapshot
    cols, dd = [*NUMERIC, *DRIFT_CATEGORICAL], definition(NUMERIC, DRIFT_CATEGORICAL)
    task = BinaryClassification(target="target", prediction_labels="prediction", pos_label="1")
    qd = definition([], ["prediction", "target"], classification=[task])
    return {
        "drift": lambda: drift(cur, ref),
        "quality": lambda: evidently_quality(cur, TASK, CLASSES),
        "error slices": lambda: find_error_slices(
            cur,
            cur["prediction"] != cur["target"],
            numeric=NUMERIC,
            categorical=[*CATEGORICAL, GROUP],
            edges=edges,
            min_rows=30,
            alpha=0.01,
        ),
        "bias": lambda: bias(cur),
        "· drift: Snapshot.dict()": snapshot.dict,
        "· drift: parse_drift (ours)": lambda: parse_drift(snapshot.dict()),
        "· direct_quality (ours)": lambda: direct_quality(cur, TASK, CLASSES),
        "HTML report (failing check: preset page + save)": lambda: drift_report(
            cur, ref, NUMERIC, DRIFT_CATEGORICAL
        ).save_html(str(tmp / "drift.html")),
        "drift calibration, per round": lambda: (
            (
                calibrate(
                    ref, len(cur), rounds=1, sigmas=3.0, drift=lambda c, r: drift(c, r).columns
                )
            ).seconds
        ),
        "figures calibration, per round": lambda: (
            calibrate(
                ref,
                len(cur),
                rounds=5,
                sigmas=3.0,
                quality=lambda chunk: direct_quality(chunk, TASK, CLASSES),
                group_gaps=lambda chunk: {
                    GROUP: {
                        g: v["value"] for g, v in direct_gaps(chunk, GROUP, cfg, CLASSES).items()
                    }
                },
            ).seconds
            / 5
        ),
        "bare Evidently DataDriftPreset": lambda: Report([DataDriftPreset()]).run(
            Dataset.from_pandas(cur[cols], data_definition=dd),
            Dataset.from_pandas(ref[cols], data_definition=dd),
        ),
        "bare Evidently Accuracy": lambda: Report([Accuracy()]).run(
            Dataset.from_pandas(cur[["target", "prediction"]], data_definition=qd), None
        ),
    }


def measure(
    size: int, repeat: int, clock: EvidentlyClock, tmp: Path
) -> tuple[dict[str, float], dict[str, float], float, float]:
    """Median seconds and tracemalloc peak MB per stage; median check total and Evidently part."""
    rng = np.random.default_rng(size)
    ref, cur = generate(rng, size, shifted=False), generate(rng, size, shifted=True)
    run = stages(ref, cur, tmp)
    times: dict[str, list[float]] = {name: [] for name in run}
    totals, inside = [], []
    for _ in range(repeat):
        clock.seconds = 0.0
        for name, fn in run.items():
            started = time.perf_counter()
            out = fn()
            times[name].append(out if "per round" in name else time.perf_counter() - started)
            if name == CHECK[-1]:
                totals.append(sum(times[s][-1] for s in CHECK))
                inside.append(clock.seconds)
    peaks: dict[str, float] = {}
    for name, fn in run.items():  # a separate pass: tracemalloc slows Python allocations
        tracemalloc.start()
        fn()
        peaks[name] = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
    median = {name: statistics.median(values) for name, values in times.items()}
    return median, peaks, statistics.median(totals), statistics.median(inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    console.print(
        f"[bold]bench/checks.py[/]: one check, 20 numeric + 2 categorical features, sizes "
        f"{args.sizes}, median of {args.repeat}, load average {os.getloadavg()[0]:.2f}"
    )
    for label, modules in (
        ("Evidently", ["evidently.metrics", "evidently.presets"]),
        ("watcher.checks.checker (torch)", ["watcher.checks.checker"]),
    ):
        started = time.perf_counter()
        for module in modules:
            importlib.import_module(module)
        console.print(f"{label} import: {time.perf_counter() - started:.2f} s (excluded)")
    clock = EvidentlyClock()
    clock.install()
    target_line = ""
    table = Table("size", "stage", "seconds (median)", "peak MB (tracemalloc)")
    summary = Table(
        "size", "check s", "in Evidently", "ours", "bare Evidently s", "ratio", "max RSS MB"
    )
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        for fn in stages(
            *(generate(np.random.default_rng(0), 2000, s) for s in (0, 1)), Path(tmp)
        ).values():
            fn()  # warm-up: lazy imports and first-call caches
        console.print(f"warm-up on 2,000 rows: {time.perf_counter() - started:.2f} s (excluded)")
        for size in args.sizes:
            median, peaks, total, inside = measure(size, args.repeat, clock, Path(tmp))
            for name, seconds in median.items():
                table.add_row(f"{size:,}", name, f"{seconds:.3f}", f"{peaks[name]:.0f}")
            check_peak = max(peaks[s] for s in CHECK)
            table.add_row(
                f"{size:,}", "[bold]full check[/]", f"[bold]{total:.3f}", f"{check_peak:.0f}"
            )
            table.add_section()
            bare = median["bare Evidently DataDriftPreset"] + median["bare Evidently Accuracy"]
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            summary.add_row(
                f"{size:,}",
                f"{total:.3f}",
                f"{inside:.3f} ({inside / total:.0%})",
                f"{total - inside:.3f} ({(total - inside) / total:.0%})",
                f"{bare:.3f}",
                f"{total / bare:.2f}",
                f"{rss:.0f}",
            )
            if size == 50_000:
                verdict = "met" if total <= 2.0 else "NOT met"
                bare_note = "above" if bare > 2.0 else "within"
                target_line = (
                    f"50k target ≤ 2 s: {verdict} ({total:.2f} s); bare Evidently alone is "
                    f"{bare:.2f} s, {bare_note} the target"
                )
    console.print(table)
    console.print(summary)
    console.print(
        "check = drift + quality + error slices + bias; 'in Evidently' = Dataset.from_pandas + "
        "Report.run + Snapshot.dict;\nratio = check / bare Evidently (DataDriftPreset + Accuracy)"
    )
    if 50_000 in args.sizes:
        console.print(target_line)
    console.print(f"load average at the end: {os.getloadavg()[0]:.2f} (2 = both cores busy)")


if __name__ == "__main__":
    main()
