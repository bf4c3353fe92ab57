"""Through the whole correction (real torch, ONNX, storage): a candidate for a bias incident
whose attribute has too few holdout rows per group is not validated, and says why. Issue 19
fixed this: the bias rule was skipped and such a candidate could be validated."""

import pytest

from correctors.pipeline import Attempt, train_candidate
from storage.queries import recent_window
from tests.support.helpers import setup_model, store_traffic
from watcher.demo.credit import SHIFTED
from watcher.demo.run import MODEL


@pytest.mark.slow
def test_a_bias_candidate_whose_attribute_cannot_be_judged_is_rejected(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 2000, SHIFTED, seed=21)  # a fix other rules validate
    model = cfg.models[MODEL]
    window = recent_window(engine, MODEL, 2000, labelled_only=True)
    attempt = Attempt(
        MODEL,
        model,
        model.correction.model_copy(update={"strategies": ["fine_tune"]}),
        window,
        drifted_columns=("utilization", "income"),
        focus_group=("region", "north"),  # no holdout row has a region
    )
    cand = train_candidate(engine, registry, attempt)
    assert cand.status == "rejected", cand.verdict["reasons"]
    reasons = cand.verdict["reasons"]
    assert any("not judged: 0 rows for group region=north (needs 20)" in r for r in reasons)
    [bias] = [r for r in cand.verdict["rules"] if r["rule"] == "bias_gap"]
    assert bias["status"] == "not_judged"
    failed = {r["rule"] for r in cand.verdict["rules"] if r["status"] in ("failed", "not_judged")}
    assert "bias_gap" in failed, reasons
