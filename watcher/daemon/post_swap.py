"""The post-swap watch: a new champion worse on live labels than the one it replaced is rolled
back by the daemon itself, with an alert."""

from __future__ import annotations

import structlog
from sqlmodel import select

from correctors.swap import rollback
from storage.db import session_scope
from storage.tables import Candidate
from watcher.alerts.message import build_alert
from watcher.checks.outcome import CheckOutcome
from watcher.config import ModelConfig
from watcher.daemon.context import DaemonContext

log = structlog.get_logger("warden.daemon")


def watch_new_champion(
    ctx: DaemonContext, name: str, model: ModelConfig, outcomes: list[CheckOutcome]
) -> None:
    """After a swap, compare the new champion's live accuracy with what the old one had on
    the same present truth; roll back by itself (and alert) if it is worse."""
    error = next((o for o in outcomes if o.kind == "error" and not o.skipped_reason), None)
    if error is None or "accuracy" not in error.figures:
        return
    with session_scope(ctx.engine) as session:
        cand = session.exec(
            select(Candidate).where(
                Candidate.model == name,
                Candidate.version == error.version,
                Candidate.status == "active",
                Candidate.watch_checks_left > 0,
            )
        ).first()
        if cand is None:
            return
        old = (cand.champion_metrics or {}).get("recent_holdout_accuracy")
        live = float(error.figures["accuracy"])
        cand.watch_checks_left -= 1
        session.add(cand)
        candidate_id, left = cand.id, cand.watch_checks_left
    if old is None or live >= old - model.approval.watch_tolerance:
        log.info("post_swap_watch", model=name, live=live, old_champion=old, left=left)
        return
    current, restored = rollback(ctx.engine, ctx.registry, name, actor="daemon")
    log.warning("post_swap_rollback", model=name, live=live, old_champion=old)
    ctx.send_alert(
        build_alert(
            "rolled_back",
            name,
            candidate_id=candidate_id,
            severity="critical",
            summary=f"{current} served accuracy {live:.3f} on {error.labelled_rows} "
            f"labelled rows, below the previous champion's {old:.3f} "
            f"(tolerance {model.approval.watch_tolerance})",
            version=restored,
            next_action=f"serving {restored} again; the candidate {candidate_id} is "
            "marked rolled_back",
        )
    )
