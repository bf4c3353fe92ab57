"""A generated product-ratings stream (a 1–5 rating to predict): the regression case of the
demo and tests, seeded, no downloads.

`normal` traffic follows the reference. The shift: deliveries got slower (covariate) and
customers now punish slow delivery twice as hard (concept), so a model trained on the old
behaviour overrates slow orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NUMERIC = ["price", "delivery_days", "discount", "support_contacts", "account_age"]
CATEGORICAL = ["category", "channel"]
CATEGORIES = ["books", "garden", "electronics", "toys"]
CHANNELS = ["web", "app", "store"]


@dataclass(frozen=True)
class RatingShift:
    slower_delivery: float = 0.0  # days added to every delivery
    delivery_weight: float = 1.0  # how much a late day costs, relative to the reference


RATINGS_NORMAL = RatingShift()
RATINGS_SHIFTED = RatingShift(slower_delivery=2.0, delivery_weight=2.0)


def generate_ratings(n: int, shift: RatingShift = RATINGS_NORMAL, seed: int = 0) -> pd.DataFrame:
    """Rows with the raw features, a `sex` group column and the true rating in `label`."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "price": np.round(rng.lognormal(3.0, 0.6, n), 2),
            "delivery_days": np.round(rng.gamma(2.0, 1.5, n) + shift.slower_delivery, 2),
            "discount": np.round(rng.uniform(0, 0.4, n), 3),
            "support_contacts": rng.poisson(0.6, n).astype(float),
            "account_age": np.round(rng.uniform(0, 10, n), 2),
            "category": rng.choice(CATEGORIES, n),
            "channel": rng.choice(CHANNELS, n, p=[0.5, 0.35, 0.15]),
            "sex": rng.choice(["F", "M"], n),
        }
    )
    effect = {"books": 0.3, "garden": 0.0, "electronics": -0.3, "toys": 0.1}
    score = (
        4.2
        - 0.25 * shift.delivery_weight * (frame["delivery_days"] - 3.0)
        - 0.6 * frame["support_contacts"]
        + 2.0 * frame["discount"]
        - 0.004 * (frame["price"] - 20)
        + frame["category"].map(effect)
        + rng.normal(0, 0.35, n)
    )
    frame["label"] = np.round(np.clip(score, 1.0, 5.0), 1)
    return frame
