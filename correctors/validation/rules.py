"""The gate's rules, one function each, every one returning typed results with its figures.

A rule that cannot be judged (no paired rows, too few rows per group) says "not judged" and,
when it gates, fails the candidate: a fix nobody could check is not a fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from correctors.settings import CorrectionConfig
from correctors.validation.paired import PairedSets, gap_change
from correctors.validation.scores import GROUP_MIN_ROWS, GroupKey, Scores, gain
from correctors.validation.verdict import Rule, RuleResult, RuleStatus

GUARDED = "reference_guarded"  # the reference holdout but the rows that left the guard
FULL_REFERENCE = "reference_holdout"  # the whole reference holdout
RECENT = "recent_holdout"
PASSED, FAILED, NOT_JUDGED = RuleStatus.PASSED, RuleStatus.FAILED, RuleStatus.NOT_JUDGED


@dataclass(frozen=True)
class Compared:
    """Champion and candidate scored and paired on the same sets, as every rule reads them."""

    champion: Scores
    candidate: Scores
    settings: CorrectionConfig
    task: str
    paired: PairedSets = field(default_factory=PairedSets)
    group_rows: Mapping[GroupKey, int] = field(default_factory=dict)  # judged or not
    focus: GroupKey | None = None  # the group a bias incident is about

    @property
    def metric(self) -> str:
        return self.champion.metric


def parity_rule(max_abs_diff: float, settings: CorrectionConfig) -> RuleResult:
    """Rule 1: torch and onnxruntime agree within `parity_tolerance`."""
    figures = {"max_abs_diff": max_abs_diff, "tolerance": settings.parity_tolerance}
    if not max_abs_diff <= settings.parity_tolerance:
        message = (
            f"ONNX parity failed: max abs diff {max_abs_diff:.2e} > {settings.parity_tolerance:.0e}"
        )
        return RuleResult(Rule.PARITY, FAILED, message, figures)
    return RuleResult(
        Rule.PARITY, PASSED, f"ONNX parity ok: max abs diff {max_abs_diff:.2e}", figures
    )


def present_rule(c: Compared) -> RuleResult:
    """Rule 2: a real gain on the recent holdout: its size, and the paired test on those rows."""
    metric, settings = c.metric, c.settings
    champ, cand = c.champion.value(RECENT), c.candidate.value(RECENT)
    rows = c.champion.rows(RECENT)
    pair = c.paired.sets.get(RECENT)
    if champ is None or cand is None:
        message = "no recent held-out labels: cannot judge the present"
        return RuleResult(Rule.PRESENT, NOT_JUDGED, message, {"rows": rows})
    figures: dict = {"champion": champ, "candidate": cand, "rows": rows}
    if pair is None:
        message = (
            f"recent holdout gain not judged: no paired rows ({metric} {champ:.3f} -> "
            f"{cand:.3f} on {rows} holdout rows)"
        )
        return RuleResult(Rule.PRESENT, NOT_JUDGED, message, figures)
    p = pair.p_better(c.task)
    figures.update(better=pair.better, worse=pair.worse, p=p, alpha=settings.paired_alpha)
    said = (
        f"{champ:.3f} -> {cand:.3f} on {rows} holdout rows; "
        f"paired: {pair.better} better, {pair.worse} worse, p={p:.2g}"
    )
    if gain(champ, cand, metric) < settings.min_improvement:
        message = (
            f"recent holdout {metric} does not beat the champion's by "
            f"{settings.min_improvement}: {said}"
        )
        return RuleResult(Rule.PRESENT, FAILED, message, figures)
    if not p < settings.paired_alpha:
        message = (
            f"recent holdout gain is not significant (paired p >= {settings.paired_alpha}): {said}"
        )
        return RuleResult(Rule.PRESENT, FAILED, message, figures)
    return RuleResult(Rule.PRESENT, PASSED, f"recent holdout {metric} {said}", figures)


def no_skill_rule(c: Compared) -> RuleResult | None:
    """Rule 2, its floor: better than the best constant answer on the recent holdout (a
    candidate merely less wrong than a broken champion is no fix)."""
    metric = c.metric
    cand = c.candidate.value(RECENT)
    score = c.champion.sets.get(RECENT)
    floor = None if score is None else score.no_skill
    if floor is None or cand is None:
        return None
    figures = {"candidate": cand, "no_skill": floor}
    if gain(floor, cand, metric) <= 0:
        message = (
            f"does not beat no skill on the recent holdout: {metric} {cand:.3f} vs "
            f"{floor:.3f} for the best constant answer"
        )
        return RuleResult(Rule.NO_SKILL, FAILED, message, figures)
    message = f"beats no skill on the recent holdout: {metric} {cand:.3f} vs {floor:.3f}"
    return RuleResult(Rule.NO_SKILL, PASSED, message, figures)


def guard_rule(c: Compared, shifted: Mapping) -> RuleResult | None:
    """Rule 3: no forgetting where the old truth holds. A loss beyond `forgetting_tolerance`
    fails when the paired test on the guarded rows says it is real at `paired_alpha` (a few
    rows of a small guarded set are noise, not forgetting); the failure names the region that
    lost most. Without paired rows the loss's size alone decides. None when no reference row
    is guarded."""
    metric, settings = c.metric, c.settings
    champ, cand = c.champion.value(GUARDED), c.candidate.value(GUARDED)
    if champ is None or cand is None:
        return None
    rows = c.champion.rows(GUARDED)
    pair = c.paired.sets.get(GUARDED)
    paired, p = "", 0.0
    if pair is not None:
        p = pair.p_worse(c.task)
        paired = f"; paired: {pair.worse} worse, {pair.better} better, p={p:.2g}"
    said = f"{metric} {champ:.3f} -> {cand:.3f} on {rows} guarded rows{paired}"
    figures: dict = {"champion": champ, "candidate": cand, "rows": rows, "p": p}
    lost = gain(champ, cand, metric) < -settings.forgetting_tolerance
    if lost and p < settings.paired_alpha:
        where, region = worst_region(c, shifted)
        figures["worst_region"] = region
        message = (
            f"forgets the reference: {said} (tolerance {settings.forgetting_tolerance}){where}"
        )
        return RuleResult(Rule.NO_FORGETTING, FAILED, message, figures)
    return RuleResult(Rule.NO_FORGETTING, PASSED, f"reference guard held: {said}", figures)


def worst_region(c: Compared, shifted: Mapping) -> tuple[str, dict]:
    """The guarded region where the candidate breaks most rows (net of those it fixes), in
    words and figures; ("", {}) when no region's rows are known."""
    if not c.paired.regions:
        return "", {}
    region, pair = max(c.paired.regions.items(), key=lambda kv: kv[1].worse - kv[1].better)
    reached = {r.get("region") for r in shifted.get("regions", []) if isinstance(r, dict)}
    where = str(shifted.get("where", {}).get(str(region), "")) or "anywhere"
    champ = _score(pair.champion_loss, c.metric)
    cand = _score(pair.champion_loss + pair.mean, c.metric)
    reach = "recent rows reach it" if region in reached else "recent traffic does not reach it"
    figures = {
        "region": region,
        "where": where,
        "rows": pair.rows,
        "champion": champ,
        "candidate": cand,
        "worse": pair.worse,
        "better": pair.better,
        "reached": region in reached,
    }
    said = (
        f"; most in region {region} ({where}; {reach}): {c.metric} {champ:.3f} -> {cand:.3f} "
        f"on its {pair.rows} guarded rows, {pair.worse} worse, {pair.better} better"
    )
    return said, figures


def _score(loss: float, metric: str) -> float:
    """A mean loss as the headline: accuracy is 1 - the 0/1 loss, MAE the loss itself."""
    return loss if metric == "mae" else 1.0 - loss


def full_reference_rule(c: Compared, shifted: Mapping) -> RuleResult | None:
    """Rule 3, the whole picture: champion -> candidate on the full reference holdout. It never
    fails the candidate (the guard decides forgetting), but a real loss there (beyond
    `forgetting_tolerance`, paired p < `paired_alpha`) while more than `review_excluded_share`
    of the holdout left the guard and recent rows reach less than `review_reached_share` of
    the reference needs a person: the guard then measures too little of what the candidate
    may break. When recent rows reach (nearly) all of it, the change was seen everywhere and
    the exclusions rest on evidence everywhere."""
    metric, s = c.metric, c.settings
    champ, cand = c.champion.value(FULL_REFERENCE), c.candidate.value(FULL_REFERENCE)
    if champ is None or cand is None:
        return None
    pair = c.paired.sets.get(FULL_REFERENCE)
    rows = c.champion.rows(FULL_REFERENCE)
    p = pair.p_worse(c.task) if pair is not None else 0.0
    excluded = int(shifted.get("reference_excluded", 0))
    share = excluded / rows if rows else 0.0
    reached = float(shifted.get("reached_share", 0.0))
    figures = {"champion": champ, "candidate": cand, "rows": rows, "p": p}
    figures.update(excluded_rows=excluded, excluded_share=share, reached_share=reached)
    said = (
        f"{metric} {champ:.3f} -> {cand:.3f} on all {rows} reference holdout rows "
        f"(paired p={p:.2g}); {excluded} of them ({share:.0%}) left the guard, recent rows "
        f"reach {reached:.0%} of the reference"
    )
    lost = gain(champ, cand, metric) < -s.forgetting_tolerance and p < s.paired_alpha
    if lost and share > s.review_excluded_share and reached < s.review_reached_share:
        message = (
            f"needs a person: loses on the full reference while over "
            f"{s.review_excluded_share:.0%} of it left the guard: {said}"
        )
        return RuleResult(Rule.FULL_REFERENCE, RuleStatus.NEEDS_PERSON, message, figures)
    return RuleResult(Rule.FULL_REFERENCE, PASSED, f"full reference: {said}", figures)


def flagged_rule(c: Compared) -> RuleResult | None:
    """Reported, not gating: the flagged slice is part of the recent holdout already judged."""
    champ, cand = c.champion.value("flagged_slice"), c.candidate.value("flagged_slice")
    if champ is None or cand is None:
        return None
    message = f"flagged slice {c.metric} {champ:.3f} -> {cand:.3f}"
    figures = {"champion": champ, "candidate": cand}
    return RuleResult(Rule.FLAGGED_SLICE, RuleStatus.REPORTED, message, figures)


def shifted_rule(shifted: Mapping) -> RuleResult:
    """Reported, not gating: which reference rows the no-forgetting rule left out, and why
    (the regions' tests, with their sample sizes, are in the figures)."""
    excluded = int(shifted.get("reference_excluded", 0))
    rows = int(shifted.get("reference_holdout_rows", 0))
    summary = str(shifted.get("summary", ""))
    if excluded:
        message = (
            f"excluded {excluded} of {rows} reference holdout rows from the no-forgetting "
            f"check: {summary}"
        )
    else:
        message = f"the whole reference holdout ({rows} rows) was guarded: {summary}"
    figures = {"reference_excluded": excluded, "reference_holdout_rows": rows}
    kept = ("excluded_share", "reached_share", "tested_regions")
    figures.update({k: shifted[k] for k in kept if k in shifted})
    return RuleResult(Rule.SHIFTED_REGION, RuleStatus.REPORTED, message, figures)


def group_rules(c: Compared) -> list[RuleResult]:
    """Per group of the recent holdout, champion and candidate compared on the same rows.

    A group regresses when it loses more than `group_gap_tolerance` AND the paired test
    (McNemar for accuracy, paired t for MAE) says the loss is real at `paired_alpha`,
    Bonferroni-corrected over the groups judged. An attribute's gap (best − worst group)
    widens under the same two conditions, corrected over the attributes. For the attribute a
    bias incident is about (`focus`), the gap must also narrow (`bias_gap_rule`); when that
    attribute has fewer than two groups with enough rows, the bias rule is not judged."""
    judged = judged_attributes(c)
    n_groups = sum(len(g) for g in judged.values())
    out: list[RuleResult] = []
    for attribute, groups in sorted(judged.items()):
        out += regressions(c, attribute, groups, c.settings.paired_alpha / n_groups)
        gap = gap_rule(c, attribute, groups, c.settings.paired_alpha / len(judged))
        out.append(gap)
        if c.focus is not None and attribute == c.focus.attribute:
            out.append(bias_rule(c, attribute, gap.figures))
    if c.focus is not None and c.focus.attribute not in judged:
        out.append(bias_not_judged(c, c.focus))
    return out


def judged_attributes(c: Compared) -> dict[str, list[GroupKey]]:
    """The attributes with at least two groups scored and paired."""
    by_attribute: dict[str, list[GroupKey]] = {}
    for group in sorted(c.paired.groups):
        score = c.champion.groups.get(group)
        if score is not None and score.value is not None:
            by_attribute.setdefault(group.attribute, []).append(group)
    return {a: g for a, g in by_attribute.items() if len(g) >= 2}


def regressions(
    c: Compared, attribute: str, groups: list[GroupKey], alpha: float
) -> list[RuleResult]:
    """One failed result per group of `attribute` that loses for real; one passed if none."""
    out = []
    for group in groups:
        pair, p = c.paired.groups[group], c.paired.groups[group].p_worse(c.task)
        if pair.mean > c.settings.group_gap_tolerance and p < alpha:
            champ, cand = _value(c.champion, group), _value(c.candidate, group)
            message = (
                f"group {group.label} regresses: {c.metric} {champ:.3f} -> {cand:.3f} on "
                f"{pair.rows} holdout rows (paired: {pair.worse} worse, {pair.better} better, "
                f"p={p:.2g} < {alpha:.2g})"
            )
            figures = {"group": group.label, "rows": pair.rows, "p": p, "alpha": alpha}
            out.append(RuleResult(Rule.GROUP_REGRESSES, FAILED, message, figures))
    if out:
        return out
    message = f"no groups.{attribute} group regresses (paired, at p < {alpha:.2g})"
    return [RuleResult(Rule.GROUP_REGRESSES, PASSED, message, {"attribute": attribute})]


def gap_rule(c: Compared, attribute: str, groups: list[GroupKey], alpha: float) -> RuleResult:
    """An attribute's gap (best − worst group) must not widen for real."""
    champ = {g: _value(c.champion, g) for g in groups}
    cand = {g: _value(c.candidate, g) for g in groups}
    worse_first = sorted(groups, key=lambda g: cand[g], reverse=c.metric == "mae")
    worst, best = worse_first[0], worse_first[-1]
    champ_gap = abs(max(champ.values()) - min(champ.values()))
    cand_gap = abs(cand[best] - cand[worst])
    _, p = gap_change(c.paired.groups[best], c.paired.groups[worst])
    sizes = ", ".join(f"{g.label} {c.paired.groups[g].rows}" for g in groups)
    said = f"{champ_gap:.3f} -> {cand_gap:.3f} (rows: {sizes}; paired p={p:.2g})"
    figures = {"attribute": attribute, "champion_gap": champ_gap, "candidate_gap": cand_gap}
    figures.update(p_widens=p, alpha=alpha)
    if cand_gap - champ_gap > c.settings.group_gap_tolerance and p < alpha:
        message = f"widens the groups.{attribute} {c.metric} gap {said}"
        return RuleResult(Rule.GROUP_GAP, FAILED, message, figures)
    return RuleResult(Rule.GROUP_GAP, PASSED, f"groups.{attribute} {c.metric} gap {said}", figures)


def bias_rule(c: Compared, attribute: str, gap: dict) -> RuleResult:
    """The gap a bias incident is about must narrow, by `bias_gap_rule`."""
    rule, alpha = c.settings.bias_gap_rule, c.settings.paired_alpha
    before, after = gap["champion_gap"], gap["candidate_gap"]
    figures = {**gap, "bias_gap_rule": rule, "paired_alpha": alpha}
    if narrows(rule, before, after, gap["p_widens"], alpha):
        message = f"narrows the groups.{attribute} gap the bias incident is about ({rule})"
        return RuleResult(Rule.BIAS_GAP, PASSED, f"{message}: {before:.3f} -> {after:.3f}", figures)
    message = (
        f"does not narrow the groups.{attribute} gap the bias incident is about "
        f"({rule}): {before:.3f} -> {after:.3f}"
    )
    return RuleResult(Rule.BIAS_GAP, FAILED, message, figures)


def bias_not_judged(c: Compared, focus: GroupKey) -> RuleResult:
    """The bias incident's attribute has fewer than two groups with `GROUP_MIN_ROWS` holdout
    rows: its gap cannot be judged, so the candidate cannot show it narrowed."""
    rows = {g: n for g, n in c.group_rows.items() if g.attribute == focus.attribute}
    rows.update({g: s.rows for g, s in c.champion.groups.items() if g.attribute == focus.attribute})
    rows.setdefault(focus, 0)
    small = sorted((n, g) for g, n in rows.items() if n < GROUP_MIN_ROWS)
    fewest = [f"{n} rows for group {g.label}" for n, g in small if n == small[0][0]]
    said = ", ".join(fewest) if fewest else f"one group of {focus.attribute}"
    message = (
        f"the groups.{focus.attribute} gap the bias incident is about is not judged: "
        f"{said} (needs {GROUP_MIN_ROWS})"
    )
    figures = {
        "attribute": focus.attribute,
        "rows": {g.label: n for g, n in sorted(rows.items())},
        "min_rows": GROUP_MIN_ROWS,
    }
    return RuleResult(Rule.BIAS_GAP, NOT_JUDGED, message, figures)


def narrows(rule: str, before: float, after: float, p_widens: float, alpha: float) -> bool:
    """`narrower`: the gap is smaller; `not_wider`: it is not larger; `significant`: smaller
    and the paired test says it narrowed (p < `paired_alpha`)."""
    if rule == "not_wider":
        return after <= before + 1e-9
    if rule == "significant":
        return after < before and 1.0 - p_widens < alpha
    return after < before


def _value(scores: Scores, group: GroupKey) -> float:
    value = scores.groups[group].value
    if value is None:
        raise ValueError(f"group {group.label} has no score")
    return value
