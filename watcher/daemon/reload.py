"""Config reloads and approvals: an edited config file is applied (an invalid edit is refused
and the last good config stays), and candidates it approves are swapped in."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from sqlmodel import select

from correctors.swap import APPROVABLE, SwapRefused
from storage.audit import record_event
from storage.db import session_scope
from storage.tables import Candidate
from watcher.alerts.alerter import Alerter
from watcher.config import ConfigError, fingerprint, load_config
from watcher.daemon.rounds import check_schedules

if TYPE_CHECKING:
    from watcher.daemon.service import Daemon

log = structlog.get_logger("warden.daemon")


class ConfigReloader:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.fingerprint = fingerprint(daemon.config_path)

    def reload_if_changed(self) -> bool:
        d = self.daemon
        current = fingerprint(d.config_path)
        if current == self.fingerprint:
            return False
        self.fingerprint = current
        try:
            new = load_config(d.config_path)
        except ConfigError as exc:
            log.error("config_rejected", error=str(exc))
            with session_scope(d.engine) as session:
                record_event(session, "config_rejected", actor="config", error=str(exc))
            return False
        if new.kafka != d.cfg.kafka or new.storage != d.cfg.storage:
            log.warning(
                "config_restart_needed",
                reason="kafka or storage settings changed; they take effect at the next start",
            )
            new = new.model_copy(update={"kafka": d.cfg.kafka, "storage": d.cfg.storage})
        schedules_changed = {n: check_schedules(m) for n, m in new.models.items()} != {
            n: check_schedules(m) for n, m in d.cfg.models.items()
        }
        try:
            alerter = Alerter(new, d.producer)
        except ConfigError as exc:  # e.g. the webhook key's variable is not set
            log.error("config_rejected", error=str(exc))
            return False
        d.cfg = new
        d.notifier.alerter = alerter
        d.rounds.checkers.clear()  # thresholds or windows may have changed
        with session_scope(d.engine) as session:
            record_event(session, "config_reloaded", actor="config")
        log.info("config_reloaded", models=list(new.models))
        if schedules_changed and d.scheduler.running:
            d.rounds.schedule()
        self.apply_approvals()
        return True

    def apply_approvals(self) -> None:
        """Swap candidates the config approves: listed ids (manual) or any waiting one (auto)."""
        d = self.daemon
        with session_scope(d.engine) as session:
            waiting = list(session.exec(select(Candidate).where(Candidate.status.in_(APPROVABLE))))
        for cand in waiting:
            model = d.cfg.models.get(cand.model)
            if model is None or not d.holds(f"model:{cand.model}"):
                continue
            approved = model.approval.mode == "auto" or cand.id in model.approval.approved
            if approved and cand.status in APPROVABLE:
                try:
                    d.corrections.swap(cand.id, actor="config")
                except SwapRefused as exc:
                    log.error("approval_refused", candidate=cand.id, reason=str(exc))
        for name, model in d.cfg.models.items():
            for cid in model.approval.approved:
                if not any(c.id == cid for c in waiting):
                    self._explain_unswappable(name, cid)

    def _explain_unswappable(self, name: str, candidate_id: str) -> None:
        with session_scope(self.daemon.engine) as session:
            cand = session.get(Candidate, candidate_id)
        if cand is None:
            log.warning("approval_unknown_candidate", model=name, candidate=candidate_id)
        elif cand.status not in ("active", "retired", "rolled_back"):
            log.warning(
                "approval_not_possible",
                model=name,
                candidate=candidate_id,
                status=cand.status,
                reason="only validated candidates can be swapped in",
            )
