"""The one way the daemon trains: a first attempt and a refinement both build an `Attempt` and
run it here (in the worker process, through `train_candidate`)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from correctors.pipeline import Attempt, NothingToCorrect, TrainingFailed, train_candidate
from storage.tables import Candidate
from watcher.daemon.context import DaemonContext

log = structlog.get_logger("warden.daemon")


def run_attempt(
    ctx: DaemonContext, attempt: Attempt, *, on_failure: Callable[[TrainingFailed], None]
) -> Candidate | None:
    """The attempt's candidate (validated or rejected), or None: nothing to correct (logged)
    or the training worker failed (handed to `on_failure`: a first attempt counts it and
    alerts, a refinement waits for its next turn)."""
    what = "refinement" if attempt.change.get("refinement") else "correction"
    try:
        return train_candidate(ctx.engine, ctx.registry, attempt, on_epoch=ctx.on_epoch)
    except NothingToCorrect as exc:
        log.info(f"{what}_skipped", model=attempt.model, reason=str(exc))
    except TrainingFailed as exc:  # the worker died, not us
        on_failure(exc)
    return None
