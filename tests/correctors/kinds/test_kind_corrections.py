"""A correction of each non-torch kind through the real pipeline (registry, SQLite, ONNX): the
demo's credit model of that kind, shifted traffic stored as intake stores it, and a candidate
of the same kind that the gate validates, with ONNX parity, on the present truth."""

from __future__ import annotations

import pytest

from correctors.models.champion import load_champion
from correctors.models.runtime import OnnxModel
from storage.registry import RegistryError
from tests.correctors.kinds.conftest import kind_setup
from tests.correctors.test_correction import correct
from tests.support.helpers import store_traffic
from watcher.demo.credit import SHIFTED, generate
from watcher.demo.first_models import KIND_OF
from watcher.demo.run import MODEL

STRATEGIES = {
    "svc": {"refit", "tuned", "retrain", "blend"},
    "lightgbm": {"continue", "retrain"},
    "xgboost": {"continue", "retrain"},
}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["svc", "lightgbm", "xgboost"])
def test_a_shifted_stream_is_corrected_by_a_validated_candidate_of_the_same_kind(
    tmp_path, kind_files, model
):
    _, cfg, engine, registry = kind_setup(tmp_path, kind_files(model))
    assert registry.card(MODEL, "v1")["kind"] == KIND_OF[model]
    store_traffic(engine, registry, 2000, SHIFTED, seed=21)
    cand = correct(cfg, engine, registry)
    assert cand.status == "validated", cand.verdict["reasons"]
    before = cand.champion_metrics["recent_holdout_accuracy"]
    after = cand.candidate_metrics["recent_holdout_accuracy"]
    assert before < 0.5 and after > before + 0.3, (before, after)
    tolerance = cfg.models[MODEL].correction.forgetting_tolerance
    guard = next(r for r in cand.verdict["rules"] if r["rule"] == "no_forgetting")
    assert guard["status"] == "passed" and guard["figures"]["forgotten"] <= tolerance
    tolerance = cfg.models[MODEL].correction.parity_tolerance
    assert cand.verdict["parity_max_abs_diff"] < tolerance
    tried = {row["strategy"].split()[0] for row in cand.training["strategies"]}  # blend α=…
    if model == "svc":  # retrain only when its rows differ from refit's
        assert {"refit", "tuned", "blend"} <= tried <= STRATEGIES[model]
    else:
        assert tried == STRATEGIES[model]
    card = registry.card(MODEL, cand.version)
    assert card["kind"] == KIND_OF[model] and card["model_file_sha256"]
    # the candidate is a champion like any other: loaded from its native file, verified
    champion = load_champion(registry, MODEL, cand.version)
    assert champion.kind == KIND_OF[model] and champion.native is not None
    served = OnnxModel.load(registry, MODEL, cand.version)
    preds, scores = served.predict(generate(50, SHIFTED, seed=8))
    assert set(preds) <= {"0", "1"} and scores.shape == (50, 2)


def test_a_native_file_that_no_longer_matches_its_card_is_refused(tmp_path, kind_files):
    _, _, _, registry = kind_setup(tmp_path, kind_files("lightgbm"))
    card = registry.card(MODEL, "v1")
    path = registry.version_dir(MODEL, "v1") / card["model_file"]
    path.write_text(path.read_text().replace("learning_rate", "learning_rate "))
    with pytest.raises(RegistryError, match="sha256"):
        load_champion(registry, MODEL, "v1")
