"""The gate's present-truth rule and the shifted region under near-total concept change
(River's Mixed stream: every label reversed). Pure figures through the real gate code."""

import numpy as np
import pytest

from correctors.settings import CorrectionConfig
from correctors.validation.gate import EvalSet, evaluate, judge, no_skill
from correctors.validation.paired import PairedLoss, PairedSets
from correctors.validation.scores import Scores


def _metrics(right: np.ndarray, no_skill_accuracy: float) -> Scores:
    return Scores.from_dict(
        {
            "recent_holdout_accuracy": float(right.mean()),
            "recent_holdout_rows": len(right),
            "recent_holdout_no_skill_accuracy": no_skill_accuracy,
            "reference_guarded_accuracy": None,
        }
    )


def _judge(champ_right: np.ndarray, cand_right: np.ndarray, no_skill_accuracy: float = 0.5):
    pair = PairedLoss.of(1.0 - champ_right, 1.0 - cand_right)
    return judge(
        _metrics(champ_right, no_skill_accuracy),
        _metrics(cand_right, no_skill_accuracy),
        0.0,
        {},
        CorrectionConfig(),
        PairedSets(sets={"recent_holdout": pair}),
    )


def test_a_candidate_only_less_wrong_than_a_broken_champion_is_no_fix():
    rng = np.random.default_rng(3)
    champ = rng.random(300) < 0.05  # a reversed concept: the champion is nearly always wrong
    cand = champ | (rng.random(300) < 0.12)  # fixes a few rows, breaks none: 0.05 -> ~0.16
    verdict = _judge(champ, cand)
    assert not verdict.passed
    assert any("does not beat no skill" in r and "0.500" in r for r in verdict.reasons), (
        verdict.reasons
    )
    # the same gain from a champion that is merely poor, to a useful candidate, passes
    good = np.where(rng.random(300) < 0.9, True, champ)
    assert _judge(champ, good).passed


def test_the_recent_gain_must_be_paired_significant_with_its_row_counts():
    champ = np.array([True] * 70 + [False] * 30)
    noisy = champ.copy()
    noisy[[70, 71, 72]] = True  # 3 fixed, 1 broken: +0.02 on 100 rows, McNemar p ~ 0.31
    noisy[0] = False
    verdict = _judge(champ, noisy)
    assert not verdict.passed
    line = next(r for r in verdict.reasons if "not significant" in r)
    assert "on 100 holdout rows" in line and "3 better, 1 worse" in line, line
    real = champ.copy()
    real[70:90] = True  # 20 fixed, none broken
    verdict = _judge(champ, real)
    assert verdict.passed, verdict.reasons
    assert any("20 better, 0 worse" in r for r in verdict.reasons)
    assert verdict.to_dict()["recent_holdout_paired"]["better"] == 20


def test_no_skill_is_the_best_constant_answer():
    data = EvalSet("recent_holdout", np.zeros((10, 1)), np.array([1] * 7 + [0] * 3))
    assert no_skill(data, "classification") == 0.7
    figures = evaluate(lambda x: np.tile([0.0, 1.0], (len(x), 1)), [data]).to_dict()
    assert figures["recent_holdout_no_skill_accuracy"] == 0.7
    values = EvalSet("recent_holdout", np.zeros((4, 1)), np.array([1.0, 2.0, 3.0, 10.0]))
    assert no_skill(values, "regression") == np.abs(values.y - 2.5).mean()


def test_forgetting_is_judged_paired_on_the_guarded_rows():
    from correctors.validation.rules import Compared, guard_rule
    from correctors.validation.verdict import RuleStatus

    settings = CorrectionConfig()

    def run(champ_right, cand_right):
        figures = {
            "reference_guarded_accuracy": float(np.mean(champ_right)),
            "reference_guarded_rows": len(champ_right),
        }
        cand = {**figures, "reference_guarded_accuracy": float(np.mean(cand_right))}
        pair = PairedLoss.of(1.0 - champ_right, 1.0 - cand_right)
        paired = PairedSets(sets={"reference_guarded": pair})
        compared = Compared(
            Scores.from_dict(figures), Scores.from_dict(cand), settings, "classification", paired
        )
        result = guard_rule(compared, {})
        assert result is not None
        return result.status is RuleStatus.PASSED, [result.message]

    champ = np.array([True] * 20 + [False] * 2)
    one_row = champ.copy()
    one_row[0] = False  # one row of 22 (-0.045): beyond the tolerance, but noise
    ok, reasons = run(champ, one_row)
    assert ok and "on 22 guarded rows" in reasons[0] and "1 worse, 0 better" in reasons[0]
    champ = np.ones(600, bool)
    champ[:30] = False
    forgot = champ.copy()
    forgot[100:130] = False  # 30 rows of 600 lost: -0.05, and real
    ok, reasons = run(champ, forgot)
    assert not ok and reasons[0].startswith("forgets the reference"), reasons
    assert "30 worse, 0 better" in reasons[0] and "on 600 guarded rows" in reasons[0]


def test_the_full_reference_asks_for_a_person_when_the_guard_saw_too_little():
    """A real loss on the whole reference holdout while much of it left the guard and recent
    rows reach little of it: needs a person (passes the gate, never auto-swapped). The same
    loss when recent rows reach nearly all of it (a rule changed everywhere, seen everywhere),
    or when little left the guard, passes."""
    from correctors.validation.rules import Compared, full_reference_rule
    from correctors.validation.verdict import RuleResult, RuleStatus

    settings = CorrectionConfig()
    champ = np.ones(1000, bool)
    champ[:100] = False
    cand = champ.copy()
    cand[200:300] = False  # 100 of 1000 rows lost: 0.9 -> 0.8, and real

    def run(excluded: int, reached: float) -> RuleResult:
        figures = {"reference_holdout_accuracy": 0.9, "reference_holdout_rows": 1000}
        scores = {**figures, "reference_holdout_accuracy": 0.8}
        paired = PairedSets(sets={"reference_holdout": PairedLoss.of(1.0 - champ, 1.0 - cand)})
        compared = Compared(
            Scores.from_dict(figures), Scores.from_dict(scores), settings, "classification", paired
        )
        shifted = {"reference_excluded": excluded, "reached_share": reached}
        result = full_reference_rule(compared, shifted)
        assert result is not None
        return result

    asks = run(excluded=650, reached=0.3)
    assert asks.status is RuleStatus.NEEDS_PERSON and not asks.fails
    assert asks.message.startswith("needs a person")
    assert "0.900 -> 0.800 on all 1000 reference holdout rows" in asks.message
    assert "650 of them (65%) left the guard" in asks.message
    assert asks.figures["excluded_share"] == 0.65 and asks.figures["reached_share"] == 0.3
    assert run(excluded=650, reached=0.95).status is RuleStatus.PASSED  # seen everywhere
    assert run(excluded=100, reached=0.3).status is RuleStatus.PASSED  # the guard saw most


def test_forgetting_is_counted_over_the_whole_reference_holdout():
    """The guarded rows' loss times their share of the reference holdout: when a change
    everywhere leaves 24 of 1200 rows guarded, losing 17 of them forgets 1.4 % of the
    reference (passes at 0.02); losing 60 of 600 guarded rows of 1000 forgets 6 % (fails)."""
    from correctors.validation.rules import Compared, guard_rule
    from correctors.validation.verdict import RuleStatus

    def run(champ_right: np.ndarray, cand_right: np.ndarray, full: int):
        figures = {
            "reference_guarded_accuracy": float(np.mean(champ_right)),
            "reference_guarded_rows": len(champ_right),
            "reference_holdout_accuracy": 0.9,
            "reference_holdout_rows": full,
        }
        cand = {**figures, "reference_guarded_accuracy": float(np.mean(cand_right))}
        pair = PairedLoss.of(1.0 - champ_right, 1.0 - cand_right)
        compared = Compared(
            Scores.from_dict(figures),
            Scores.from_dict(cand),
            CorrectionConfig(),
            "classification",
            PairedSets(sets={"reference_guarded": pair}),
        )
        result = guard_rule(compared, {})
        assert result is not None
        return result

    champ = np.ones(24, bool)
    cand = champ.copy()
    cand[:17] = False
    few = run(champ, cand, 1200)
    assert few.status is RuleStatus.PASSED, few.message
    assert "(2% of the reference holdout: +0.014 over all of it)" in few.message
    champ = np.ones(600, bool)
    cand = champ.copy()
    cand[:60] = False
    many = run(champ, cand, 1000)
    assert many.status is RuleStatus.FAILED, many.message
    assert many.figures["forgotten"] == pytest.approx(0.06)
