"""The reference profile of one serving version: everything a check needs from the reference,
fitted once and kept in the registry beside the version's card, so that no check re-reads the
reference frame and no daemon (after a restart, or on another machine) fits it again.

Per numeric column the sorted finite values (exact statistics: Evidently's figures to the last
digit), per categorical column the frequency table, the reference's quality figures and error-
slice bin edges, and the calibrated normal ranges per window-size bucket. Stored as JSON (the
tables and figures) + .npz (the arrays, loaded with allow_pickle=False): never pickle.

A fingerprint of the reference rows says which reference a profile was fitted on: a version
whose reference changes (a pinned window, the rows a correction was validated on) gets a new
profile instead of an old one.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from storage.registry import ModelRegistry
from watcher.checks.calibration import Calibration
from watcher.checks.sketches import (
    SKETCH_ROWS,
    Moments,
    merge_sketched,
    sketch_column,
    sketched_ref,
)
from watcher.checks.stattests import CategoricalRef, NumericRef, finite_sorted

FORMAT = 1


@dataclass
class ReferenceProfile:
    rows: int
    fingerprint: str
    source: str
    numeric: dict[str, NumericRef]
    categorical: dict[str, CategoricalRef]
    quality: dict[str, float] = field(default_factory=dict)
    edges: dict[str, list[float]] = field(default_factory=dict)
    calibrations: dict[str, Calibration] = field(default_factory=dict)
    fit_seconds: float = 0.0
    loaded: bool = False  # read from the registry, not fitted in this process
    moments: dict[str, Moments] = field(default_factory=dict)  # sketched columns' (mergeable)


def fingerprint(frame: pd.DataFrame, columns: list[str]) -> str:
    """Which reference rows (values and order) a profile belongs to."""
    hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes() + ",".join(columns).encode()).hexdigest()[:32]


def plain(value: Any) -> Any:
    """A frequency table's key as JSON keeps it (numpy scalars → Python)."""
    return value.item() if isinstance(value, np.generic) else value


def fit_profile(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    source: str = "",
    quality: dict[str, float] | None = None,
    edges: dict[str, Any] | None = None,
    known_fingerprint: str | None = None,
    sketch_above: int = SKETCH_ROWS,
) -> ReferenceProfile:
    """Fit the profile of `frame`'s `numeric` and `categorical` columns; a numeric column
    with more than `sketch_above` finite rows (and > 20 values) keeps a KLL sketch."""
    started = time.perf_counter()
    profile = ReferenceProfile(
        rows=len(frame),
        fingerprint=known_fingerprint or fingerprint(frame, [*numeric, *categorical]),
        source=source,
        numeric={c: numeric_column(finite_sorted(frame[c]), sketch_above) for c in numeric},
        categorical={
            c: CategoricalRef(
                {plain(k): int(v) for k, v in frame[c].dropna().value_counts(sort=False).items()}
            )
            for c in categorical
        },
        quality=dict(quality or {}),
        edges={c: [float(x) for x in np.asarray(e)] for c, e in (edges or {}).items()},
    )
    for col, ref in profile.numeric.items():
        if ref.sketch is not None:  # exact, mergeable moments beside the sketch
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            profile.moments[col] = Moments.of(values[np.isfinite(values)])
    profile.fit_seconds = time.perf_counter() - started
    return profile


def numeric_column(sorted_values: np.ndarray, sketch_above: int) -> NumericRef:
    """Exact sorted values, or a sketch above `sketch_above` rows (when > 20 values)."""
    exact = NumericRef.of(sorted_values)
    if len(sorted_values) > sketch_above and len(exact.uniques) > 20:
        return sketch_column(sorted_values)
    return exact


def moments(ref: NumericRef) -> Moments:
    """Count, mean and squared deviations of a column (exact columns: from their values)."""
    if ref.sketch is not None:
        # a sketch without its recorded moments: the mean from its quantiles (approximate)
        return Moments(ref.n, float(ref.values.mean()), ref.std**2 * ref.n)
    return Moments.of(ref.values)


def merge_profiles(
    a: ReferenceProfile, b: ReferenceProfile, sketch_above: int = SKETCH_ROWS
) -> ReferenceProfile:
    """Two partitions' profiles as one: counts added, sorted values merged (or sketches,
    above `sketch_above` rows). Quality figures, slice edges and calibrations are not
    mergeable: the merged profile has none (calibrate it again)."""
    numeric: dict[str, NumericRef] = {}
    for col, left in a.numeric.items():
        right = b.numeric[col]
        if left.sketch is None and right.sketch is None:
            merged = np.sort(np.concatenate((left.values, right.values)), kind="stable")
            numeric[col] = numeric_column(merged, sketch_above)
        else:
            left_m = a.moments.get(col) or moments(left)
            right_m = b.moments.get(col) or moments(right)
            numeric[col], _ = merge_sketched(left, left_m, right, right_m)
    categorical = {
        c: CategoricalRef(
            {
                k: r.counts.get(k, 0) + b.categorical[c].counts.get(k, 0)
                for k in {*r.counts, *b.categorical[c].counts}
            }
        )
        for c, r in a.categorical.items()
    }
    combined = hashlib.sha256(f"{a.fingerprint}+{b.fingerprint}".encode()).hexdigest()[:32]
    profile = ReferenceProfile(
        rows=a.rows + b.rows,
        fingerprint=combined,
        source=f"{a.source} + {b.source}",
        numeric=numeric,
        categorical=categorical,
    )
    profile.moments = {c: m for c, m in ((c, _sketch_moments(a, b, c)) for c in numeric) if m}
    return profile


def _sketch_moments(a: ReferenceProfile, b: ReferenceProfile, col: str) -> Moments | None:
    left, right = a.numeric[col], b.numeric[col]
    if left.sketch is None and right.sketch is None:
        return None
    return (a.moments.get(col) or moments(left)).merge(b.moments.get(col) or moments(right))


def to_stored(profile: ReferenceProfile) -> tuple[dict[str, Any], bytes]:
    """The profile's JSON document and its arrays as .npz bytes."""
    token = uuid.uuid4().hex
    names = list(profile.numeric)
    arrays: dict[str, Any] = {}
    for i, col in enumerate(names):
        ref = profile.numeric[col]
        if ref.sketch is not None:  # the sketch's bytes, not its quantile grid
            arrays[f"k{i}"] = np.frombuffer(ref.sketch, dtype=np.uint8)
        else:
            arrays[f"n{i}"] = ref.values
    arrays["token"] = np.array(token)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    meta = {
        "format": FORMAT,
        "token": token,
        "rows": profile.rows,
        "fingerprint": profile.fingerprint,
        "source": profile.source,
        "numeric": names,
        "moments": {
            c: [m.n, m.mean, m.m2]
            for c, m in (
                (c, profile.moments.get(c) or moments(r)) for c, r in profile.numeric.items()
            )
            if profile.numeric[c].sketch is not None
        },
        "categorical": {
            c: list(map(list, r.counts.items())) for c, r in profile.categorical.items()
        },
        "quality": profile.quality,
        "edges": profile.edges,
        "calibrations": {k: c.as_dict() for k, c in profile.calibrations.items()},
        "fit_seconds": profile.fit_seconds,
    }
    return meta, buffer.getvalue()


def from_stored(meta: dict[str, Any], arrays: Any) -> ReferenceProfile | None:
    """The profile back; None when the arrays are not the ones the JSON names."""
    if meta.get("format") != FORMAT or str(arrays["token"]) != meta.get("token"):
        return None
    stored = {c: Moments(int(n), mean, m2) for c, (n, mean, m2) in meta["moments"].items()}
    numeric = {
        c: sketched_ref(arrays[f"k{i}"].tobytes(), stored[c])
        if c in stored
        else NumericRef.of(arrays[f"n{i}"])
        for i, c in enumerate(meta["numeric"])
    }
    return ReferenceProfile(
        rows=int(meta["rows"]),
        fingerprint=meta["fingerprint"],
        source=meta["source"],
        numeric=numeric,
        categorical={
            c: CategoricalRef(dict(map(tuple, t))) for c, t in meta["categorical"].items()
        },
        quality=meta["quality"],
        edges=meta["edges"],
        calibrations={k: Calibration.from_dict(v) for k, v in meta["calibrations"].items()},
        fit_seconds=float(meta.get("fit_seconds", 0.0)),
        loaded=True,
        moments=stored,
    )


def save_profile(registry: ModelRegistry, model: str, version: str, profile: ReferenceProfile):
    """Keep `profile` beside the version's card (again after each new calibration)."""
    meta, arrays = to_stored(profile)
    registry.write_profile(model, version, meta, arrays)


def load_profile(
    registry: ModelRegistry, model: str, version: str, expected: str
) -> ReferenceProfile | None:
    """The stored profile of `version` if it was fitted on the reference `expected` names."""
    stored = registry.read_profile(model, version)
    if stored is None or stored[0].get("fingerprint") != expected:
        return None
    with np.load(stored[1], allow_pickle=False) as arrays:
        return from_stored(stored[0], arrays)
