"""The gate's figures, typed: a score per evaluation set and per group of the recent holdout.

Stored rows and the card keep the flat form (`recent_holdout_accuracy`, `group:sex=F_rows`, …)
that readers (post-swap checks, benches, pages) use; `Scores.to_dict` is the one place that
writes it and `Scores.from_dict` the one place that reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GROUP_PREFIX = "group:"
GROUP_MIN_ROWS = 20  # holdout rows a group needs to be judged by the gate
NO_SKILL_SET = "recent_holdout"  # the set whose best constant answer is the no-skill floor


def headline(task: str) -> str:
    """The metric the gate judges by: accuracy (higher is better) or MAE (lower is better)."""
    return "mae" if task == "regression" else "accuracy"


def task_of(metric: str) -> str:
    return "regression" if metric == "mae" else "classification"


def gain(champ: float, cand: float, metric: str) -> float:
    """How much better the candidate is (positive = better), whatever the direction."""
    return champ - cand if metric == "mae" else cand - champ


@dataclass(frozen=True, order=True)
class GroupKey:
    """One group of the recent holdout: an attribute and one of its values."""

    attribute: str
    value: str

    @property
    def label(self) -> str:
        return f"{self.attribute}={self.value}"

    @property
    def set_name(self) -> str:
        """The group's name in stored figures (`group:sex=F`)."""
        return f"{GROUP_PREFIX}{self.label}"

    @classmethod
    def from_set_name(cls, name: str) -> GroupKey | None:
        """Read a stored group name back; None for a set that is not a group."""
        if not name.startswith(GROUP_PREFIX) or "=" not in name:
            return None
        attribute, value = name[len(GROUP_PREFIX) :].split("=", 1)
        return cls(attribute, value)


@dataclass(frozen=True)
class SetScore:
    """A model's headline on one evaluation set (None when the set is empty)."""

    rows: int
    value: float | None
    no_skill: float | None = None  # the best constant answer's headline on the same rows


@dataclass(frozen=True)
class Scores:
    """A model's headline on every evaluation set and every judged group."""

    metric: str  # "accuracy" (higher is better) or "mae" (lower is better)
    sets: dict[str, SetScore] = field(default_factory=dict)
    groups: dict[GroupKey, SetScore] = field(default_factory=dict)

    def value(self, name: str) -> float | None:
        score = self.sets.get(name)
        return None if score is None else score.value

    def rows(self, name: str) -> int | None:
        score = self.sets.get(name)
        return None if score is None else score.rows

    def to_dict(self) -> dict:
        """The flat figures stored in the candidate row and the card."""
        out: dict = {}
        named = [(name, s) for name, s in self.sets.items()]
        named += [(g.set_name, s) for g, s in self.groups.items()]
        for name, score in named:
            out[f"{name}_{self.metric}"] = score.value
            out[f"{name}_rows"] = score.rows
            if name == NO_SKILL_SET:
                out[f"{name}_no_skill_{self.metric}"] = score.no_skill
        return out

    @classmethod
    def from_dict(cls, flat: dict) -> Scores:
        """Stored flat figures read back (the metric is the one their headline keys carry)."""
        metric = "mae" if any(k.endswith("_mae") for k in flat) else "accuracy"
        scores = cls(metric)
        for key, value in flat.items():
            name = _set_name(key, metric)
            if name is None:
                continue
            score = SetScore(
                rows=int(flat.get(f"{name}_rows") or 0),
                value=value,
                no_skill=flat.get(f"{name}_no_skill_{metric}"),
            )
            group = GroupKey.from_set_name(name)
            if group is None:
                scores.sets[name] = score
            else:
                scores.groups[group] = score
        return scores


def _set_name(key: str, metric: str) -> str | None:
    suffix = f"_{metric}"
    if not key.endswith(suffix) or key.endswith(f"_no_skill{suffix}"):
        return None
    return key[: -len(suffix)]
