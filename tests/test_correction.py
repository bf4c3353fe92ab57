"""Correction through real torch and ONNX: the gate validates a real fix, rejects a non-fix,
keeps the full reference guard under covariate shift and excludes the contradicted region
under concept shift."""

import pytest

from correctors.pipeline import train_candidate
from correctors.swap import SwapRefused, swap
from storage.queries import recent_window
from tests.helpers import setup_model, store_frame, store_traffic
from watcher.demo.credit import COVARIATE_ONLY, NORMAL, SHIFTED, generate
from watcher.demo.run import MODEL


def correct(cfg, engine, registry, **settings):
    model = cfg.models[MODEL]
    window = recent_window(engine, MODEL, 2000, labelled_only=True)
    correction = model.correction.model_copy(update=settings)
    return train_candidate(
        engine,
        registry,
        MODEL,
        model,
        correction,
        window,
        drifted_columns=["utilization", "income"],
    )


def test_concept_shift_candidate_is_validated_and_names_the_excluded_region(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 2000, SHIFTED, seed=21)
    cand = correct(cfg, engine, registry)
    assert cand.status == "validated", cand.verdict["reasons"]
    assert cand.candidate_metrics["recent_holdout_accuracy"] > 0.8
    assert cand.champion_metrics["recent_holdout_accuracy"] < 0.5
    # the flagged slice is repaired, and where the old truth holds nothing is forgotten
    ch, ca = cand.champion_metrics, cand.candidate_metrics
    assert ca["flagged_slice_accuracy"] > ch["flagged_slice_accuracy"] + 0.3
    tolerance = cfg.models[MODEL].correction.forgetting_tolerance
    assert ca["reference_guarded_accuracy"] >= ch["reference_guarded_accuracy"] - tolerance
    shifted = cand.verdict["shifted_region"]
    assert shifted["concept_shift"] and shifted["reference_excluded"] > 50
    assert any("excluded" in r for r in cand.verdict["reasons"])
    assert cand.verdict["parity_max_abs_diff"] < 1e-4
    card = registry.card(MODEL, cand.version)
    assert card["onnx_sha256"] == cand.onnx_sha256


def test_covariate_shift_keeps_the_whole_reference_guarded(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 2000, COVARIATE_ONLY, seed=22)
    cand = correct(cfg, engine, registry)
    shifted = cand.verdict["shifted_region"]
    assert not shifted["concept_shift"] and shifted["reference_excluded"] == 0
    assert any("whole reference" in r for r in cand.verdict["reasons"])


def test_candidate_no_better_than_the_champion_is_rejected_and_never_swapped(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 2000, NORMAL, seed=23)
    cand = correct(cfg, engine, registry, min_improvement=0.05)
    assert cand.status == "rejected"
    assert any("does not beat" in r for r in cand.verdict["reasons"])
    with pytest.raises(SwapRefused, match="only validated"):
        swap(engine, registry, cand.id, actor="config")
    assert registry.active(MODEL) == "v1"


def test_poisoned_labels_give_a_rejected_candidate_with_reasons(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 2000, SHIFTED, seed=24, poison=1.0)  # every label a coin
    cand = correct(cfg, engine, registry)
    assert cand.status == "rejected", cand.verdict["reasons"]
    assert any("does not beat" in r or "forgets" in r for r in cand.verdict["reasons"])
    assert registry.active(MODEL) == "v1"


def test_parity_failure_or_corrupt_onnx_never_goes_live(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 2000, SHIFTED, seed=25)
    strict = correct(cfg, engine, registry, parity_tolerance=1e-12)  # float32 cannot meet it
    assert strict.status == "rejected"
    assert any("ONNX parity failed" in r for r in strict.verdict["reasons"])
    with pytest.raises(SwapRefused):
        swap(engine, registry, strict.id, actor="operator")

    good = correct(cfg, engine, registry)
    assert good.status == "validated", good.verdict["reasons"]
    onnx = registry.onnx_path(MODEL, good.version)
    onnx.write_bytes(onnx.read_bytes()[:-16] + b"corrupted bytes!")  # bit rot after validation
    with pytest.raises(SwapRefused, match="sha256"):
        swap(engine, registry, good.id, actor="operator")
    assert registry.active(MODEL) == "v1"


def test_a_candidate_that_widens_a_group_gap_is_rejected(workdir, trained):
    """The labelling rule changes for men only: a fine-tune that learns the new rule for
    everyone fixes M and breaks F. The per-group gate must refuse it."""
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    frame = generate(3000, SHIFTED, seed=26)  # labels flipped for high utilisation …
    unflipped = generate(3000, COVARIATE_ONLY, seed=26)  # … the same rows, old labels
    women = frame["sex"] == "F"
    frame.loc[women, "label"] = unflipped.loc[women, "label"]  # … but only for men
    store_frame(engine, registry, frame)
    cand = correct(cfg, engine, registry, min_improvement=0.0)
    reasons = cand.verdict["reasons"]
    assert cand.status == "rejected", reasons
    assert any("group sex=F regresses" in r or "widens the groups.sex" in r for r in reasons)
    assert (
        cand.champion_metrics["group:sex=F_accuracy"]
        > cand.candidate_metrics["group:sex=F_accuracy"]
    )


def test_training_summary_counts_each_data_step(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    frame = generate(2000, SHIFTED, seed=27)
    frame.loc[:4, "income"] = 1e9  # absurd values, clipped not trusted
    store_frame(engine, registry, frame)
    cand = correct(cfg, engine, registry)
    counts = cand.training
    assert counts["clipped_outlier_values"] >= 5
    for key in ("dropped_missing_labels", "dropped_duplicates", "dropped_unknown_labels"):
        assert counts[key] == 0, key
    assert counts["flagged_total"] > 0 and counts["replay_rows"] > 0


def test_group_rule_allows_noise_of_small_groups_but_not_a_real_regression():
    from correctors.settings import CorrectionConfig
    from correctors.validation.gate import group_rules

    settings = CorrectionConfig(group_gap_tolerance=0.03)
    champion = {
        "group:hand=left_accuracy": 0.51,
        "group:hand=left_rows": 70,
        "group:hand=right_accuracy": 0.52,
        "group:hand=right_rows": 80,
    }
    noisy = {"group:hand=left_accuracy": 0.93, "group:hand=right_accuracy": 0.975}  # 3 rows
    assert group_rules(champion, noisy, settings, [])
    broken = {"group:hand=left_accuracy": 0.25, "group:hand=right_accuracy": 0.95}
    reasons: list[str] = []
    assert not group_rules(champion, broken, settings, reasons)
    assert any("left regresses" in r for r in reasons)
    assert any("widens the groups.hand" in r for r in reasons)
