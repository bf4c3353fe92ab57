"""The encoding saved with a model: unknown categories, missing values and free text have a
defined encoding, the same in training, checks and serving, and it round-trips via the card."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from correctors.models.encoding import FeatureEncoder

REFERENCE = pd.DataFrame(
    {
        "age": [20.0, 30.0, 40.0, 50.0],
        "plan": ["basic", "pro", "basic", "plus"],
        "note": ["great fast delivery", "broken item", None, "GREAT, great!"],
    }
)


def encoder() -> FeatureEncoder:
    return FeatureEncoder.fit(REFERENCE, ["age"], ["plan"], ["note"], buckets=16)


def test_layout_numeric_categorical_text():
    enc = encoder()
    assert enc.width == 1 + (3 + 1) + 16  # age, plan vocab + <unknown>, 16 hash slots
    x = enc.transform(REFERENCE)
    assert x.dtype == np.float32 and x.shape == (4, enc.width)
    assert abs(x[:, 0].mean()) < 1e-6  # standardised on the reference
    assert (x[:, 1:5].sum(axis=1) == 1).all()  # exactly one plan slot each


def test_unknown_and_missing_values_have_a_defined_encoding():
    enc = encoder()
    odd = pd.DataFrame(
        {"age": [None, "n/a", 35.0], "plan": ["enterprise", None, "pro"], "note": [None, "", 5]}
    )
    x = enc.transform(odd)
    assert x[0, 0] == 0.0 and x[1, 0] == 0.0  # missing / non-numeric → the mean
    unknown_slot = 1 + 3
    assert x[0, unknown_slot] == 1.0 and x[1, unknown_slot] == 1.0  # unseen and missing share it
    assert x[2, 1 + enc.vocab["plan"].index("pro")] == 1.0
    assert not x[:, 5:].any()  # missing, empty or non-text → no words
    missing_column = enc.transform(pd.DataFrame({"age": [30.0]}))  # a feature not sent at all
    assert missing_column[0, unknown_slot] == 1.0


def test_text_is_case_and_punctuation_insensitive_and_normalised():
    enc = encoder()
    x = enc.transform(
        pd.DataFrame({"age": [1, 1], "plan": ["pro"] * 2, "note": ["Great!", "great"]})
    )
    assert np.array_equal(x[0], x[1])
    bag = x[0, 5:]
    assert abs(np.linalg.norm(bag) - 1.0) < 1e-6
    words = enc.transform(pd.DataFrame({"note": ["never seen words"]}))[0, 5:]
    assert words.any()  # unseen words still land in hash slots


def test_round_trip_through_the_card():
    enc = encoder()
    again = FeatureEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert np.array_equal(again.transform(REFERENCE), enc.transform(REFERENCE))
    old_card = {k: v for k, v in enc.to_dict().items() if k not in ("text", "buckets")}
    tabular = FeatureEncoder.from_dict(old_card)  # cards written before text support
    assert tabular.width == 1 + 4


def test_the_servers_fast_path_encodes_exactly_like_training():
    from watcher.demo.reviews import generate_reviews
    from watcher.serving.server import encode_rows

    frame = generate_reviews(200, seed=3)
    frame.loc[::7, "review"] = None
    frame.loc[::5, "channel"] = "kiosk"  # unseen category
    enc = FeatureEncoder.fit(frame, ["stars_shown"], ["channel"], ["review"], buckets=64)
    rows = frame[enc.features].astype(object).where(frame[enc.features].notna(), None)
    assert np.array_equal(encode_rows(enc, rows.to_dict(orient="records")), enc.transform(frame))


def test_wild_values_are_clipped_the_same_in_training_and_serving():
    from watcher.serving.server import encode_rows

    enc = encoder()
    wild = pd.DataFrame({"age": [1e9, -1e9], "plan": ["pro", "pro"], "note": ["x", "y"]})
    x = enc.transform(wild)
    assert x[0, 0] == enc.clip_sd and x[1, 0] == -enc.clip_sd
    assert np.array_equal(encode_rows(enc, wild.to_dict(orient="records")), x)
