"""A new check kind is one class that satisfies `Check` plus one registration: the checker
runs it on the window like the built-in kinds and its failure opens an incident of its kind."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.support.helpers import setup_model, store_traffic
from watcher.checks.checker import ModelChecker
from watcher.checks.incidents import record_outcomes
from watcher.checks.outcome import KINDS, CheckKind, CheckOutcome, seq_range
from watcher.checks.protocol import CheckContext, VersionReference
from watcher.checks.registry import CHECKS, check_for, register_check, unregister_check
from watcher.demo.credit import NORMAL
from watcher.demo.run import MODEL


class TooManyRows:
    """Fails when the window holds more rows than `limit`."""

    kind = "too_many_rows"

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def run(
        self, window: pd.DataFrame, reference: VersionReference, context: CheckContext
    ) -> CheckOutcome:
        outcome = CheckOutcome(self.kind, reference.version, len(window) <= self.limit, len(window))
        outcome.seq_range = seq_range(window)
        outcome.figures = {"limit": self.limit, "model": context.model}
        outcome.summary = f"{len(window)} rows (limit {self.limit})"
        outcome.severity = "warning" if not outcome.passed else "info"
        return outcome


@pytest.fixture()
def too_many_rows():
    check = register_check(TooManyRows(limit=100))
    yield check
    unregister_check(check.kind)


def test_a_registered_kind_runs_through_the_checker_and_opens_its_incident(
    workdir, trained, too_many_rows
):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 300, NORMAL, seed=31)
    checker = ModelChecker(MODEL, engine, registry, cfg.storage.reports)
    [outcome] = checker.run(cfg.models[MODEL], ("too_many_rows",))
    assert outcome.kind == "too_many_rows" and not outcome.passed
    assert outcome.rows == 300 and outcome.figures == {"limit": 100, "model": MODEL}
    assert outcome.version == registry.active(MODEL) and outcome.duration_s > 0
    [change] = record_outcomes(engine, MODEL, [outcome], cfg.models[MODEL].checks)
    assert change.opened and change.incident.kind == "too_many_rows"


def test_the_built_in_kinds_are_registered_once_by_their_names(too_many_rows):
    assert KINDS == ("drift", "error", "bias") == tuple(CheckKind)
    assert all(check_for(kind).kind == kind for kind in KINDS)
    assert check_for("too_many_rows") is too_many_rows
    with pytest.raises(ValueError, match="already registered"):
        register_check(TooManyRows(limit=5))
    with pytest.raises(KeyError, match="registered: "):
        check_for("no_such_kind")
    assert set(CHECKS) == {*KINDS, "too_many_rows"}
