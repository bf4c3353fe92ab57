"""A generated credit-risk stream for the demo and the tests: no downloads, fully seeded.

`normal` traffic follows the reference. `shifted` traffic moves two inputs (covariate shift:
utilisation up, income down) and changes the labelling rule for high-utilisation customers
(concept shift: a new repayment plan makes them the ones who repay).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

NUMERIC = [
    "income",
    "debt_ratio",
    "utilization",
    "age",
    "tenure",
    "n_accounts",
    "late_payments",
    "balance",
]
CATEGORICAL = ["region", "plan"]
REGIONS = ["north", "south", "east", "west"]
PLANS = ["basic", "plus", "pro"]
REGION_EFFECT = {"north": 0.3, "south": -0.2, "east": 0.0, "west": -0.4}
PLAN_EFFECT = {"basic": 0.3, "plus": 0.0, "pro": -0.3}
SCALE = {  # (mean, std) of each numeric column in natural units
    "income": (55.0, 15.0),
    "debt_ratio": (0.35, 0.12),
    "utilization": (0.45, 0.2),
    "age": (42.0, 12.0),
    "tenure": (6.0, 4.0),
    "n_accounts": (4.0, 2.0),
    "late_payments": (1.0, 1.0),
    "balance": (12.0, 6.0),
}
SHIFT_UTILIZATION_Z = 0.8  # the concept changes above this utilisation z-score


@dataclass(frozen=True)
class Shift:
    """How traffic departs from the reference."""

    utilization_z: float = 0.0  # covariate shift of utilisation, in reference std units
    income_z: float = 0.0  # covariate shift of income
    concept: bool = False  # flip the label rule where utilisation z > SHIFT_UTILIZATION_Z


NORMAL = Shift()
SHIFTED = Shift(utilization_z=1.2, income_z=-0.8, concept=True)
COVARIATE_ONLY = Shift(utilization_z=1.2, income_z=-0.8, concept=False)
# the rule changes where the traffic moved: recent rows reach all of the changed region
CONCEPT_SEEN = Shift(utilization_z=1.2, concept=True)


def generate(n: int, shift: Shift = NORMAL, seed: int = 0) -> pd.DataFrame:
    """Rows with the raw features, a `sex` group column and the true `label` (0/1)."""
    rng = np.random.default_rng(seed)
    z = {col: rng.normal(size=n) for col in NUMERIC}
    z["utilization"] += shift.utilization_z
    z["income"] += shift.income_z
    region = rng.choice(REGIONS, size=n)
    plan = rng.choice(PLANS, size=n, p=[0.5, 0.3, 0.2])
    score = (
        1.3 * z["utilization"]
        + 0.9 * z["debt_ratio"]
        - 1.0 * z["income"]
        + 0.6 * z["late_payments"]
        - 0.3 * z["tenure"]
        + np.vectorize(REGION_EFFECT.get)(region)
        + np.vectorize(PLAN_EFFECT.get)(plan)
        + rng.normal(scale=0.5, size=n)
    )
    label = (score > 0.4).astype(int)
    if shift.concept:
        flipped = z["utilization"] > SHIFT_UTILIZATION_Z
        label = np.where(flipped, 1 - label, label)
    frame = pd.DataFrame(
        {col: np.round(SCALE[col][0] + SCALE[col][1] * z[col], 4) for col in NUMERIC}
    )
    frame["region"] = region
    frame["plan"] = plan
    frame["sex"] = rng.choice(["F", "M"], size=n)
    frame["label"] = label
    return frame


def prediction_messages(
    frame: pd.DataFrame,
    model: str,
    version: str,
    predictions: list,
    scores: np.ndarray,
    features: list[str] | None = None,
) -> list[dict]:
    """Prediction logs in the DESIGN.md schema for rows that a model version just scored
    (`features`: the columns to log; the credit model's by default)."""
    now = datetime.now(UTC).isoformat()
    records = frame[features or NUMERIC + CATEGORICAL].to_dict(orient="records")
    return [
        {
            "prediction_id": uuid.uuid4().hex,
            "model": model,
            "model_version": version,
            "ts": now,
            "features": features,
            "prediction": pred if isinstance(pred, float) else int(pred),
            "scores": [round(float(s), 6) for s in score],
            "groups": {"sex": sex},
            "label": None,
        }
        for features, pred, score, sex in zip(
            records, predictions, scores, frame["sex"], strict=True
        )
    ]
