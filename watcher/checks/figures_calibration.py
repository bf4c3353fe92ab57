"""Normal ranges of the quality figures and group gaps from hundreds of reference chunks, as
matrix products: every figure is a ratio of counts (or sums) over the chunk's rows, so one
product of the chunk masks (rounds × rows) with a few per-row indicator columns gives every
round's counts at once. The figures are `direct_quality`'s and the gaps `gaps()`'s (the same
functions then judge them), and the chunks are drawn as `calibration.calibrate` draws them."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from watcher.checks.calibration import Calibration, normal_range
from watcher.checks.quality import frame_for_quality, gaps

BATCH_CELLS = 4_000_000


def chunk_masks(
    rows: int, chunk: int, rounds: int, rng: np.random.Generator, contiguous: bool
) -> np.ndarray:
    """Each round's chunk as a mask over the rows: a run at a random start on even rounds
    when `contiguous`, else random rows (as `calibration._chunks`)."""
    masks = np.zeros((rounds, rows), dtype=bool)
    for r in range(rounds):
        if contiguous and r % 2 == 0:
            start = int(rng.integers(0, rows - chunk + 1))
            masks[r, start : start + chunk] = True
        else:
            masks[r, rng.permutation(rows)[:chunk]] = True
    return masks


def indicator_columns(
    frame: pd.DataFrame, task: str, classes: list[str], attributes: list[str]
) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """Per-row columns whose chunk sums give every figure: (attribute or "", group, name)."""
    data = frame_for_quality(frame, task).reindex(frame.index)
    columns: list[np.ndarray] = []
    names: list[tuple[str, str, str]] = []
    scopes: list[tuple[str, str, np.ndarray]] = [("", "", np.ones(len(frame), dtype=bool))]
    for attribute in attributes:
        values = frame[attribute]
        keyed = values.astype(str).where(values.notna())
        for group in sorted(keyed.dropna().unique()):
            scopes.append((attribute, group, (keyed == group).to_numpy()))
    per_row = row_figures(data, task, classes)
    for attribute, group, inside in scopes:
        for name, values in per_row.items():
            columns.append(np.where(inside, values, 0.0))
            names.append((attribute, group, name))
    return np.column_stack(columns), names


def row_figures(data: pd.DataFrame, task: str, classes: list[str]) -> dict[str, np.ndarray]:
    """The per-row terms the figures are made of (rows without a target count nowhere)."""
    valid = data["target"].notna().to_numpy()
    if task == "regression":
        target = data["target"].to_numpy(dtype=float)
        err = data["prediction"].to_numpy(dtype=float) - target
        clean = np.where(valid, 1.0, 0.0)
        return {
            "rows": clean,
            "abs": np.where(valid, np.abs(err), 0.0),
            "sq": np.where(valid, err**2, 0.0),
            "t": np.where(valid, target, 0.0),
            "t2": np.where(valid, target**2, 0.0),
        }
    target, pred = data["target"].to_numpy(), data["prediction"].to_numpy()
    positive = classes[-1]
    actual = target == positive
    return {
        "rows": valid.astype(float),
        "correct": (target == pred).astype(float),
        "selected": (pred == positive).astype(float),
        "positives": actual.astype(float),
        "found": (actual & (pred == positive)).astype(float),
    }


def figures_of(sums: dict[str, float], task: str) -> dict[str, float]:
    """`direct_quality`'s figures from one scope's sums."""
    n = sums["rows"]
    if task == "regression":
        ss_tot = sums["t2"] - sums["t"] ** 2 / n if n else 0.0
        return {
            "mae": sums["abs"] / n if n else float("nan"),
            "rmse": float(np.sqrt(sums["sq"] / n)) if n else float("nan"),
            "r2": 1.0 - sums["sq"] / ss_tot if ss_tot > 1e-12 else 0.0,
        }
    positives = sums["positives"]
    return {
        "accuracy": sums["correct"] / n if n else float("nan"),
        "selection_rate": sums["selected"] / n if n else float("nan"),
        "tpr": sums["found"] / positives if positives else float("nan"),
    }


def calibrate_figures_fast(
    frame: pd.DataFrame,
    chunk_rows: int,
    *,
    task: str,
    classes: list[str],
    attributes: list[str],
    min_group_rows: int,
    rounds: int,
    sigmas: float,
    contiguous: bool = True,
    seed: int = 0,
) -> Calibration:
    """`calibrate(quality=direct_quality, group_gaps=direct_gaps)` in one pass of products."""
    started = time.perf_counter()
    frame = frame.reset_index(drop=True)
    chunk = min(chunk_rows, len(frame) // 2)
    rng = np.random.default_rng(seed)
    matrix, names = indicator_columns(frame, task, classes, attributes)
    masks = chunk_masks(len(frame), chunk, rounds, rng, contiguous)
    step = max(1, BATCH_CELLS // max(len(frame), 1))
    sums = np.vstack(
        [masks[lo : lo + step].astype(float) @ matrix for lo in range(0, rounds, step)]
    )
    qualities: dict[str, list[float]] = {}
    found_gaps: dict[str, dict[str, list[float]]] = {}
    for row in sums:
        scopes: dict[tuple[str, str], dict[str, float]] = {}
        for (attribute, group, name), value in zip(names, row, strict=True):
            scopes.setdefault((attribute, group), {})[name] = float(value)
        for name, value in figures_of(scopes[("", "")], task).items():
            qualities.setdefault(name, []).append(value)
        for attribute in attributes:
            groups = {
                g: {**figures_of(s, task), "judged": s["rows"] >= min_group_rows}
                for (a, g), s in scopes.items()
                if a == attribute and s["rows"] > 0
            }
            for gap, figures in gaps(groups, task).items():
                found_gaps.setdefault(attribute, {}).setdefault(gap, []).append(figures["value"])
    fpc = 1.0 / np.sqrt(max(1e-9, 1.0 - chunk / len(frame)))
    return Calibration(
        chunk_rows=chunk,
        rounds=rounds,
        chunks="contiguous and random" if contiguous else "random",
        quality={q: normal_range(v, sigmas, fpc) for q, v in qualities.items()},
        gaps={
            a: {g: normal_range(v, sigmas, fpc) for g, v in found.items() if len(v) > 1}
            for a, found in found_gaps.items()
        },
        seconds=time.perf_counter() - started,
    )
