"""What the gate decided, typed: one result per rule; the sentences are for people.

Code decides from `RuleResult.status`, never from the wording of `message`. A stored verdict
keeps `reasons` (the sentences) and `rules` (the results); verdicts stored without `rules`
read back with their reasons only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Rule(StrEnum):
    PARITY = "parity"  # torch and onnxruntime agree
    PRESENT = "present"  # a real gain on the recent holdout
    NO_SKILL = "no_skill"  # better than the best constant answer there
    NO_FORGETTING = "no_forgetting"  # the guarded reference is kept
    FULL_REFERENCE = "full_reference"  # the whole reference holdout: a person when much left
    GROUP_REGRESSES = "group_regresses"  # no group of the recent holdout loses for real
    GROUP_GAP = "group_gap"  # no attribute's gap widens for real
    BIAS_GAP = "bias_gap"  # the gap a bias incident is about narrows
    FLAGGED_SLICE = "flagged_slice"  # reported, not gating
    SHIFTED_REGION = "shifted_region"  # reported, not gating


REPORT_ONLY = frozenset({Rule.FLAGGED_SLICE, Rule.SHIFTED_REGION})


class RuleStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_JUDGED = "not_judged"  # too little data to decide: a gating rule not judged fails
    REPORTED = "reported"  # a report-only rule's figures
    NEEDS_PERSON = "needs_person"  # passes the gate, but not to be swapped without a person


PASSING = frozenset({RuleStatus.PASSED, RuleStatus.NEEDS_PERSON})


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    status: RuleStatus
    message: str
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def gating(self) -> bool:
        return self.rule not in REPORT_ONLY

    @property
    def fails(self) -> bool:
        return self.gating and self.status not in PASSING

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": str(self.rule),
            "status": str(self.status),
            "message": self.message,
            "figures": self.figures,
        }


@dataclass
class Verdict:
    """The rule results of one candidate; it passes when every gating rule passed."""

    rules: list[RuleResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # sentences ahead of the rules' own
    figures: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.rules) and not self.failed

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.rules if r.fails]

    @property
    def reasons(self) -> list[str]:
        return [*self.notes, *(r.message for r in self.rules)]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "rules": [r.to_dict() for r in self.rules],
            **self.figures,
        }


def stored_rules(verdict: dict | None) -> list[dict]:
    """The rule results of a stored verdict (none for a verdict stored without them)."""
    return [r for r in (verdict or {}).get("rules", []) if isinstance(r, dict)]


def failed_rule_names(verdict: dict | None) -> list[str]:
    """The gating rules a stored verdict failed or could not judge, by name."""
    judged = (RuleStatus.PASSED, RuleStatus.REPORTED, RuleStatus.NEEDS_PERSON)
    return [
        str(r.get("rule"))
        for r in stored_rules(verdict)
        if r.get("rule") not in REPORT_ONLY and r.get("status") not in judged
    ]
