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
) -> ReferenceProfile:
    """Fit the profile of `frame`'s `numeric` and `categorical` columns."""
    started = time.perf_counter()
    profile = ReferenceProfile(
        rows=len(frame),
        fingerprint=known_fingerprint or fingerprint(frame, [*numeric, *categorical]),
        source=source,
        numeric={c: NumericRef.of(finite_sorted(frame[c])) for c in numeric},
        categorical={
            c: CategoricalRef(
                {plain(k): int(v) for k, v in frame[c].dropna().value_counts(sort=False).items()}
            )
            for c in categorical
        },
        quality=dict(quality or {}),
        edges={c: [float(x) for x in np.asarray(e)] for c, e in (edges or {}).items()},
    )
    profile.fit_seconds = time.perf_counter() - started
    return profile


def to_stored(profile: ReferenceProfile) -> tuple[dict[str, Any], bytes]:
    """The profile's JSON document and its arrays as .npz bytes."""
    token = uuid.uuid4().hex
    names = list(profile.numeric)
    arrays: dict[str, Any] = {f"n{i}": profile.numeric[c].values for i, c in enumerate(names)}
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
    numeric = {c: NumericRef.of(arrays[f"n{i}"]) for i, c in enumerate(meta["numeric"])}
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
