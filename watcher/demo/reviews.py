"""A generated product-review stream (is the review positive?): the text-classification case
of the tests, seeded, no downloads.

Reviews are built from small word lists. The shift is a change of meaning: slang that used to
read as a complaint ("sick", "wicked", "insane") is now praise, and it shows up far more often,
so a model trained on the old usage calls happy customers unhappy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

POSITIVE = ["great", "love", "excellent", "perfect", "happy", "recommend", "fast", "solid"]
NEGATIVE = ["broken", "terrible", "refund", "slow", "awful", "disappointed", "late", "cheap"]
SLANG = ["sick", "wicked", "insane"]
FILLER = ["the", "product", "it", "was", "and", "delivery", "item", "quality", "really", "very"]
CHANNELS = ["web", "app"]


@dataclass(frozen=True)
class ReviewShift:
    slang_rate: float = 0.05  # share of reviews using slang
    slang_positive: bool = False  # what slang means now


REVIEWS_NORMAL = ReviewShift()
REVIEWS_SHIFTED = ReviewShift(slang_rate=0.6, slang_positive=True)


def generate_reviews(n: int, shift: ReviewShift = REVIEWS_NORMAL, seed: int = 0) -> pd.DataFrame:
    """Rows with `review` (text), `stars_shown` and `channel`, a `sex` group column and the
    true label (1 = positive)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        positive = rng.random() < 0.5
        slang = rng.random() < shift.slang_rate
        words = list(rng.choice(FILLER, size=rng.integers(4, 9)))
        mood = POSITIVE if positive else NEGATIVE
        words += list(rng.choice(mood, size=rng.integers(1, 3)))
        if slang:
            # slang carries the sentiment: it means what the period says it means
            words = [w for w in words if w not in POSITIVE + NEGATIVE]
            words += list(rng.choice(SLANG, size=rng.integers(1, 3)))
            positive = shift.slang_positive
        if rng.random() < 0.1:  # some noise: a mixed review
            words.append(str(rng.choice(POSITIVE + NEGATIVE)))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(int(positive))
    return pd.DataFrame(
        {
            "review": texts,
            "stars_shown": rng.integers(1, 6, size=n).astype(float),
            "channel": rng.choice(CHANNELS, size=n),
            "sex": rng.choice(["F", "M"], size=n),
            "label": labels,
        }
    )
