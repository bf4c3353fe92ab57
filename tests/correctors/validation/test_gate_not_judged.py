"""Gate rules that cannot be judged fail, saying so; the `significant` bias rule tests at
`paired_alpha`. Each is a defect fixed by issue 19 (they passed silently, or at 0.05)."""

import numpy as np

from correctors.settings import CorrectionConfig
from correctors.validation.gate import judge
from correctors.validation.paired import PairedLoss, PairedSets
from correctors.validation.scores import GroupKey, Scores, SetScore
from correctors.validation.verdict import Rule, RuleStatus

F, M = GroupKey("sex", "F"), GroupKey("sex", "M")


def _scores(recent: float, groups: dict[GroupKey, np.ndarray] | None = None) -> Scores:
    return Scores(
        "accuracy",
        sets={"recent_holdout": SetScore(400, recent, 0.5)},
        groups={g: SetScore(len(r), float(np.mean(r))) for g, r in (groups or {}).items()},
    )


def _recent_pair(better: int) -> PairedLoss:
    champ = np.array([True] * 280 + [False] * 120)
    cand = champ.copy()
    cand[280 : 280 + better] = True
    return PairedLoss.of(1.0 - champ, 1.0 - cand)


def _pairs(champ: dict, cand: dict) -> dict[GroupKey, PairedLoss]:
    return {g: PairedLoss.of(1.0 - champ[g], 1.0 - cand[g]) for g in champ}


def _rule(verdict, rule: Rule):
    return [r for r in verdict.rules if r.rule is rule]


def test_a_bias_incident_whose_groups_are_too_small_is_not_judged_and_not_validated():
    rng = np.random.default_rng(1)
    men = rng.random(300) < 0.8  # only M has enough holdout rows to be judged
    verdict = judge(
        _scores(0.70, {M: men}),
        _scores(0.80, {M: men}),
        0.0,
        {},
        CorrectionConfig(),
        PairedSets(sets={"recent_holdout": _recent_pair(40)}, groups=_pairs({M: men}, {M: men})),
        focus=F,
        group_rows={F: 12, M: 300},
    )
    assert not verdict.passed
    [bias] = _rule(verdict, Rule.BIAS_GAP)
    assert bias.status is RuleStatus.NOT_JUDGED
    assert "not judged: 12 rows for group sex=F (needs 20)" in bias.message, bias.message
    assert bias.message in verdict.reasons
    assert bias.figures["rows"] == {"sex=F": 12, "sex=M": 300}
    # every other rule passed: the attribute that cannot be judged is what rejects it
    assert [r.rule for r in verdict.failed] == [Rule.BIAS_GAP]


def test_a_bias_incident_with_no_rows_of_its_group_names_it_with_zero_rows():
    verdict = judge(
        _scores(0.70),
        _scores(0.80),
        0.0,
        {},
        CorrectionConfig(),
        PairedSets(sets={"recent_holdout": _recent_pair(40)}),
        focus=F,
    )
    assert not verdict.passed
    assert any("not judged: 0 rows for group sex=F (needs 20)" in r for r in verdict.reasons)


def test_the_present_rule_without_paired_rows_is_not_judged_and_fails():
    verdict = judge(_scores(0.70), _scores(0.90), 0.0, {}, CorrectionConfig(), paired=None)
    assert not verdict.passed
    [present] = _rule(verdict, Rule.PRESENT)
    assert present.status is RuleStatus.NOT_JUDGED
    assert "not judged" in present.message
    # the same figures with their paired rows pass
    paired = PairedSets(sets={"recent_holdout": _recent_pair(80)})
    assert judge(_scores(0.70), _scores(0.90), 0.0, {}, CorrectionConfig(), paired).passed


def test_the_significant_bias_rule_tests_at_paired_alpha():
    rng = np.random.default_rng(9)
    champ = {F: rng.random(400) < 0.70, M: rng.random(400) < 0.80}

    def bias_status(fixed: int, alpha: float) -> RuleStatus:
        cand = {F: champ[F].copy(), M: champ[M]}
        cand[F][np.flatnonzero(~champ[F])[:fixed]] = True
        settings = CorrectionConfig(bias_gap_rule="significant", paired_alpha=alpha)
        verdict = judge(
            _scores(0.70, champ),
            _scores(0.80, cand),
            0.0,
            {},
            settings,
            PairedSets(sets={"recent_holdout": _recent_pair(40)}, groups=_pairs(champ, cand)),
            focus=F,
        )
        [bias] = _rule(verdict, Rule.BIAS_GAP)
        assert bias.figures["paired_alpha"] == alpha
        return bias.status

    # 2 rows of F fixed: the gap narrows at p ~ 0.08; 4 rows: p ~ 0.02
    assert bias_status(2, 0.10) is RuleStatus.PASSED  # at a hard-coded 0.05 it failed
    assert bias_status(2, 0.05) is RuleStatus.FAILED
    assert bias_status(4, 0.01) is RuleStatus.FAILED  # at a hard-coded 0.05 it passed
    assert bias_status(4, 0.05) is RuleStatus.PASSED
