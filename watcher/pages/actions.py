"""The exact next action for an incident, in the words the daemon's alerts use, and the command
or config line that carries it out. Approval stays in the config file (or `warden approve`,
which edits it): the pages show what to type, they never do it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from storage.tables import Candidate, Incident
from watcher.config import ModelConfig


@dataclass
class NextAction:
    text: str
    commands: list[str] = field(default_factory=list)  # exact lines to type or paste


def approval_commands(cand_id: str, model: str, config_path: Path | None) -> list[str]:
    """`warden approve` (which edits the config), or the same line added by hand."""
    config = str(config_path) if config_path else "warden.toml"
    return [
        f"warden approve {cand_id} --config {config}",
        f'[models.{model}.approval] approved = ["{cand_id}"]   # in {config}',
    ]


def candidate_action(cand: Candidate, model: ModelConfig | None, config_path: Path | None):
    """What happens next to a candidate, by its status."""
    name = cand.model
    reasons = "; ".join(map(str, (cand.verdict or {}).get("reasons", [])))
    if cand.status == "awaiting_approval":
        where = config_path or "the config file"
        return NextAction(
            f'add "{cand.id}" to models.{name}.approval.approved in {where} to swap it in',
            approval_commands(cand.id, name, config_path),
        )
    if cand.status == "validated":
        if model is not None and model.approval.mode == "auto":
            return NextAction(f"swapping {cand.id} in (approval mode auto)")
        return NextAction(
            f"{cand.id} passed the gate and awaits approval",
            approval_commands(cand.id, name, config_path),
        )
    if cand.status == "training":
        return NextAction(f"correction running: {cand.id} is training and then meets the gate")
    if cand.status == "rejected":
        return NextAction(f"nothing: the champion keeps serving ({cand.id} rejected: {reasons})")
    if cand.status == "failed":
        return NextAction(f"nothing yet: {cand.id} failed ({reasons}); the next round retries")
    if cand.status in ("active", "retired"):
        return NextAction(
            f"serving {cand.version}; `warden rollback {name}` restores the previous version",
            [f"warden rollback {name} --config {config_path or 'warden.toml'}"],
        )
    if cand.status == "rolled_back":
        return NextAction(f"nothing: {cand.id} was rolled back; the previous version serves")
    if cand.status == "withdrawn":
        return NextAction(
            f"nothing: {cand.id} was withdrawn (its incident resolved by itself); "
            "the champion keeps serving"
        )
    return NextAction(f"{cand.id} is {cand.status}")


def next_action(
    incident: Incident,
    candidates: list[Candidate],
    model: ModelConfig | None,
    config_path: Path | None,
    waiting: Callable[[Incident], str] | None,
) -> NextAction:
    """The incident's next action: from its state, its latest candidate, or (no candidate yet)
    the daemon's own words, exactly as its alert put them."""
    if incident.status == "resolved":
        return NextAction(f"nothing: resolved after {incident.clean_checks} clean checks")
    latest = max(candidates, key=lambda c: c.updated_at, default=None)
    if incident.status == "corrected":
        if latest is not None:
            return candidate_action(latest, model, config_path)
        return NextAction("nothing: corrected by a swap")
    if latest is not None and latest.status != "failed":
        return candidate_action(latest, model, config_path)
    if incident.correction_attempts and incident.correction_error:
        return NextAction(
            f"correction failed {incident.correction_attempts} time(s): "
            f"{incident.correction_error[:300]}; the next round retries"
        )
    if waiting is not None:
        return NextAction(waiting(incident))
    return NextAction("decided by the daemon at its next check round (see its alert or log)")
