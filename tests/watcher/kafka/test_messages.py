import json

import pytest

from watcher.kafka.wire import BadMessage, parse_label, parse_prediction

GOOD = {
    "prediction_id": "p1",
    "model": "credit",
    "model_version": "v1",
    "ts": "2026-11-22T20:00:00Z",
    "features": {"age": 41, "plan": "pro"},
    "prediction": 1,
    "scores": [0.2, 0.8],
    "groups": {"sex": "F"},
    "label": None,
}


def raw(obj) -> bytes:
    return json.dumps(obj).encode()


def test_good_prediction_parses():
    row = parse_prediction(raw(GOOD), 10_000)
    assert row["prediction_id"] == "p1" and row["prediction"] == "1"
    assert row["ts"].tzinfo is not None and row["label"] is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"prediction_id": "p1", "model": ', "not valid JSON"),
        (raw({k: v for k, v in GOOD.items() if k != "model"}), "model"),
        (raw({**GOOD, "features": "age=41"}), "features"),
        (raw({**GOOD, "ts": "yesterday"}), "ts"),
        (raw(GOOD).replace(b"41", b"NaN"), "non-finite"),
        (raw(GOOD).replace(b"41", b"1e999"), "finite"),
        (b"\xff\xfe\x00junk", "UTF-8"),
        (raw([1, 2, 3]), "Expected `object`"),
        (raw({**GOOD, "features": {"x": "a" * 20_000}}), "exceeds"),
        (None, "empty"),
        (raw({**GOOD, "prediction_id": ""}), "prediction_id"),
        (raw({**GOOD, "scores": "high"}), "scores"),
        (b'{"prediction_id": "\\ud800"}', "not valid JSON"),
        (raw(GOOD).replace(b'"pro"', b'"a\\u0000b"'), "NUL"),
        (raw(GOOD).replace(b'"pro"', b'"a\xffb"'), "UTF-8"),  # inside a string
        (raw({**GOOD, "ts": "9999-12-31T23:30:00-02:00"}), "out of range"),
    ],
)
def test_bad_predictions_say_why(payload, reason):
    with pytest.raises(BadMessage, match=reason):
        parse_prediction(payload, 10_000)


def test_labels():
    assert parse_label(raw({"prediction_id": "p1", "label": 1.0}), 1000)["label"] == "1"
    with pytest.raises(BadMessage, match="label"):
        parse_label(raw({"prediction_id": "p1"}), 1000)
    with pytest.raises(BadMessage, match="UTF-8"):
        parse_label(b'{"prediction_id": "x\xff", "label": 1}', 1000)
