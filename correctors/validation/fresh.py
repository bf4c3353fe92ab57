"""Proof on fresh rows: champion and candidate scored, paired, on the rows labelled after the
candidate's training cut-off (the end of the window it trained on, in its card).

The gate judged a candidate on a holdout cut from the rows it trained beside; rows that arrive
later say whether its gain lasts. Both models score the stored features through their ONNX
files, so the comparison is the one serving would make. No fresh rows is no evidence against a
candidate (an auto swap right after validation has none; the gate's holdout is its proof then):
`significantly_worse` needs rows, and a paired test below `alpha`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from correctors.models.runtime import OnnxModel
from correctors.swap import SwapRefused
from correctors.validation.paired import PairedLoss
from storage.queries import recent_window
from storage.registry import ModelRegistry


@dataclass(frozen=True)
class FreshProof:
    """Champion and candidate on the rows labelled since the candidate's cut-off."""

    candidate_version: str
    champion_version: str | None
    since_seq: int | None  # first seq after the cut-off (None: the card records no cut-off)
    task: str
    rows: int
    champion: float | None  # accuracy (classification) or MAE (regression) on those rows
    candidate: float | None
    paired: PairedLoss
    p_worse: float  # one-sided: McNemar (classification), paired t (regression)
    alpha: float

    @property
    def metric(self) -> str:
        return "mae" if self.task == "regression" else "accuracy"

    @property
    def significantly_worse(self) -> bool:
        return self.rows > 0 and self.p_worse < self.alpha

    def sentence(self) -> str:
        """The figures in one line, for a person."""
        if self.rows == 0:
            since = "" if self.since_seq is None else f" after seq {self.since_seq - 1}"
            return f"no fresh labelled rows{since}: nothing to compare on yet"
        verdict = "significantly worse" if self.significantly_worse else "not significantly worse"
        return (
            f"fresh rows since seq {self.since_seq}: {self.metric} {self.champion:.3f} "
            f"(champion {self.champion_version}) -> {self.candidate:.3f} "
            f"(candidate {self.candidate_version}) on {self.rows} rows; "
            f"{self.paired.worse} rows broken, {self.paired.better} fixed; "
            f"p(worse) = {self.p_worse:.3g}: {verdict} at alpha {self.alpha}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate_version": self.candidate_version,
            "champion_version": self.champion_version,
            "since_seq": self.since_seq,
            "metric": self.metric,
            "rows": self.rows,
            "champion": self.champion,
            "candidate": self.candidate,
            "paired": self.paired.to_dict(),
            "p_worse": self.p_worse,
            "alpha": self.alpha,
            "significantly_worse": self.significantly_worse,
        }


def cut_off_seq(card: dict[str, Any]) -> int | None:
    """The last seq of the window a candidate trained on, as its card records it."""
    end = (card.get("baseline") or {}).get("drift_reference", {}).get("end_seq")
    return int(end) if end is not None else None


def row_losses(model: OnnxModel, rows: pd.DataFrame) -> np.ndarray:
    """Per labelled row: wrong (0/1) for classification, |error| for regression."""
    predictions, _ = model.predict(rows)
    if model.task == "regression":
        truth = pd.to_numeric(rows["label"]).to_numpy(float)
        return np.abs(np.asarray(predictions, float) - truth)
    return (np.asarray(predictions, str) != rows["label"].astype(str).to_numpy()).astype(float)


def prove_on_fresh_rows(
    engine: Engine,
    registry: ModelRegistry,
    model: str,
    candidate_version: str,
    *,
    alpha: float,
    max_rows: int,
) -> FreshProof:
    """Score the serving version and the candidate on the newest `max_rows` rows labelled
    after the candidate's cut-off, paired."""
    card = registry.card(model, candidate_version)
    champion_version = registry.active(model)
    end = cut_off_seq(card)
    task = str(card.get("task", "classification"))
    rows = pd.DataFrame()
    if end is not None and champion_version is not None:
        rows = recent_window(engine, model, max_rows, labelled_only=True, start_seq=end + 1)
    if rows.empty:
        empty = PairedLoss.of(np.zeros(0), np.zeros(0))
        since = None if end is None else end + 1
        return FreshProof(
            candidate_version, champion_version, since, task, 0, None, None, empty, 1.0, alpha
        )
    assert champion_version is not None  # rows are read only when a version serves
    champ = row_losses(OnnxModel.load(registry, model, champion_version), rows)
    cand = row_losses(OnnxModel.load(registry, model, candidate_version), rows)
    paired = PairedLoss.of(champ, cand)

    def figure(loss: np.ndarray) -> float:
        return round(float(loss.mean() if task == "regression" else 1.0 - loss.mean()), 4)

    return FreshProof(
        candidate_version,
        champion_version,
        end + 1 if end is not None else None,
        task,
        len(rows),
        figure(champ),
        figure(cand),
        paired,
        paired.p_worse(task),
        alpha,
    )


class WorseOnFreshRows(SwapRefused):
    """A swap or approval refused: the candidate is significantly worse than the serving
    champion on the rows labelled since its cut-off; `proof` holds the figures."""

    def __init__(self, candidate_id: str, proof: FreshProof) -> None:
        super().__init__(
            f"{candidate_id} is significantly worse than the serving champion on the rows "
            f"labelled since it was trained: {proof.sentence()}; `warden approve {candidate_id} "
            "--force` overrides (recorded with the operator as actor)"
        )
        self.candidate_id, self.proof = candidate_id, proof
