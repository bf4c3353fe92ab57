"""Normal ranges learnt from the reference itself, so thresholds do not cry wolf.

On real data Evidently's default per-column tests flag many columns of perfectly ordinary
windows. Like NannyML's reference chunks, we cut the reference into chunks of the check's
window size, compare each chunk with the rest of the reference exactly as a live window is
compared with the whole reference, and learn each figure's spread: every column's drift
magnitude, the headline quality and every group gap. A live figure outside
mean ± sigmas·std (on its bad side) is abnormal.

By default every other chunk is a contiguous run of rows: a real reference is ordered (seasons,
regions, batches) and so is live traffic, so a window of consecutive rows differs from the
rest more than a random sample of rows does (random chunks alone on a weather stream made
every window read as drift); the random chunks in between keep the range from being too
narrow where the order means nothing (overlapping runs are correlated). The figures say which
way was used. `contiguous=False` draws every chunk at random.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class NormalRange:
    mean: float
    std: float
    low: float
    high: float
    samples: int

    def sigmas_above(self, value: float) -> float:
        return (value - self.mean) / self.std if self.std > 0 else float("inf")

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "low": self.low, "high": self.high}

    def stored(self) -> list[float]:
        return [self.mean, self.std, self.low, self.high, self.samples]

    @classmethod
    def from_stored(cls, values: list[float]) -> NormalRange:
        mean, std, low, high, samples = values
        return cls(float(mean), float(std), float(low), float(high), int(samples))


def normal_range(
    values: list[float], sigmas: float, inflate: float = 1.0, floor_std: float = 1e-9
) -> NormalRange:
    """mean ± sigmas·std of `values`; `inflate` widens std (see the finite-population note)."""
    arr = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    mean = float(arr.mean())
    std = max(float(arr.std(ddof=1)) * inflate if len(arr) > 1 else 0.0, floor_std)
    # never narrower than what the reference itself produced
    return NormalRange(
        mean,
        std,
        min(mean - sigmas * std, float(arr.min())),
        max(mean + sigmas * std, float(arr.max())),
        len(arr),
    )


@dataclass
class Calibration:
    chunk_rows: int
    rounds: int
    chunks: str = "contiguous and random"  # or "random": how reference chunks were drawn
    columns: dict[str, NormalRange] = field(default_factory=dict)  # drift magnitude
    methods: dict[str, str] = field(default_factory=dict)  # the method each column was tested by
    quality: dict[str, NormalRange] = field(default_factory=dict)
    gaps: dict[str, dict[str, NormalRange]] = field(default_factory=dict)  # attribute → gap
    seconds: float = 0.0

    def summary(self) -> dict:
        return {
            "chunk_rows": self.chunk_rows,
            "rounds": self.rounds,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 2),
        }

    def as_dict(self) -> dict:
        """Everything, for the stored profile (JSON)."""
        return {
            **self.summary(),
            "seconds": self.seconds,
            "columns": {c: r.stored() for c, r in self.columns.items()},
            "methods": self.methods,
            "quality": {q: r.stored() for q, r in self.quality.items()},
            "gaps": {a: {g: r.stored() for g, r in f.items()} for a, f in self.gaps.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(
            chunk_rows=int(data["chunk_rows"]),
            rounds=int(data["rounds"]),
            chunks=data["chunks"],
            columns={c: NormalRange.from_stored(r) for c, r in data["columns"].items()},
            methods=dict(data["methods"]),
            quality={q: NormalRange.from_stored(r) for q, r in data["quality"].items()},
            gaps={
                a: {g: NormalRange.from_stored(r) for g, r in f.items()}
                for a, f in data["gaps"].items()
            },
            seconds=float(data["seconds"]),
        )


DriftFn = Callable[[pd.DataFrame, pd.DataFrame], dict]  # chunk, rest → {column: ColumnDrift}
FiguresFn = Callable[[pd.DataFrame], dict[str, float]]
GapsFn = Callable[[pd.DataFrame], dict[str, dict[str, float]]]


def calibrate(
    reference: pd.DataFrame,
    chunk_rows: int,
    *,
    rounds: int,
    sigmas: float,
    drift: DriftFn | None = None,
    quality: FiguresFn | None = None,
    group_gaps: GapsFn | None = None,
    seed: int = 0,
    contiguous: bool = True,
) -> Calibration:
    """Draw `rounds` chunks of `chunk_rows` (at most half the reference; consecutive rows at
    random starts, or random rows) and learn the normal range of every figure. Seeded: one
    reference, one calibration."""
    started = time.perf_counter()
    chunk_rows = min(chunk_rows, len(reference) // 2)
    rng = np.random.default_rng(seed)
    samples = _Samples()
    for chunk, rest in _chunks(reference, chunk_rows, rounds, rng, contiguous):
        samples.add(chunk, rest, drift, quality, group_gaps)
    # Chunks drawn without replacement from a finite reference vary less than independent
    # windows of traffic would (finite-population correction): undo that for quality and gaps.
    fpc = 1.0 / np.sqrt(max(1e-9, 1.0 - chunk_rows / len(reference)))
    return Calibration(
        chunk_rows=chunk_rows,
        rounds=rounds,
        chunks="contiguous and random" if contiguous else "random",
        columns={c: normal_range(v, sigmas) for c, v in samples.magnitudes.items()},
        methods=samples.methods,
        quality={q: normal_range(v, sigmas, fpc) for q, v in samples.qualities.items()},
        gaps={
            a: {g: normal_range(v, sigmas, fpc) for g, v in found.items() if len(v) > 1}
            for a, found in samples.gaps.items()
        },
        seconds=time.perf_counter() - started,
    )


def _chunks(
    reference: pd.DataFrame,
    chunk_rows: int,
    rounds: int,
    rng: np.random.Generator,
    contiguous: bool,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Each round's chunk and the rest of the reference. Contiguous chunks alternate with
    random ones: a run of rows shows what an ordered reference (seasons, batches) varies by,
    but overlapping runs are correlated and alone would understate the spread of an
    unordered one."""
    for round_ in range(rounds):
        if contiguous and round_ % 2 == 0:
            start = int(rng.integers(0, len(reference) - chunk_rows + 1))
            inside = np.zeros(len(reference), dtype=bool)
            inside[start : start + chunk_rows] = True
            yield reference.iloc[inside], reference.iloc[~inside]
        else:
            order = rng.permutation(len(reference))
            yield reference.iloc[order[:chunk_rows]], reference.iloc[order[chunk_rows:]]


@dataclass
class _Samples:
    """Every figure's value on every chunk so far."""

    magnitudes: dict[str, list[float]] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    qualities: dict[str, list[float]] = field(default_factory=dict)
    gaps: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(
        self,
        chunk: pd.DataFrame,
        rest: pd.DataFrame,
        drift: DriftFn | None,
        quality: FiguresFn | None,
        group_gaps: GapsFn | None,
    ) -> None:
        if drift is not None:  # the expensive part (Evidently), calibrated separately
            for col, found in drift(chunk, rest).items():
                self.magnitudes.setdefault(col, []).append(found.magnitude)
                self.methods[col] = found.method
        if quality is not None:
            for name, value in quality(chunk).items():
                self.qualities.setdefault(name, []).append(value)
        if group_gaps is not None:
            for attribute, found_gaps in group_gaps(chunk).items():
                for gap, value in found_gaps.items():
                    self.gaps.setdefault(attribute, {}).setdefault(gap, []).append(value)


def size_bucket(rows: int) -> int:
    """Calibrations are cached per power of two of the window size: a time-based window that
    shrinks to a quarter is judged against chunks of its own size, not of the full window."""
    return 1 << max(0, int(np.floor(np.log2(max(rows, 1)))))
