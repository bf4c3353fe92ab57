"""The scikit-learn kind's ensemble candidate: the champion and a newly fitted model, their
scores averaged with weights (1 − α, α), as one prefitted `VotingClassifier` (soft voting) or
`VotingRegressor`, so it saves with skops (scikit-learn types only) and exports with skl2onnx
as one graph: serving stays one model. Like the torch kind's interpolation, the gate keeps the
largest α that passes. A refit alone forgets what only the champion's own training rows taught
it; the blend keeps part of the champion's answer everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BLEND_STEPS = (0.9, 0.8, 0.7, 0.6)  # α: the new model's weight


def blend(champion: Any, fitted: Any, alpha: float, task: str, n_classes: int) -> Any:
    """A prefitted soft-voting ensemble of `champion` (weight 1 − α) and `fitted` (α)."""
    from sklearn.ensemble import VotingClassifier, VotingRegressor
    from sklearn.preprocessing import LabelEncoder

    estimators = [("champion", champion), ("candidate", fitted)]
    weights = np.array([1.0 - alpha, alpha])
    if task == "regression":
        out: Any = VotingRegressor(estimators, weights=weights)
    else:
        # flatten_transform=False: skl2onnx converts only that form
        out = VotingClassifier(estimators, voting="soft", weights=weights, flatten_transform=False)
        out.le_ = LabelEncoder().fit(np.arange(n_classes))
        out.classes_ = out.le_.classes_
    out.estimators_ = [champion, fitted]  # named_estimators_ left out: skops does not trust Bunch
    return out
