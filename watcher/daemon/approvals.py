"""Approving and rejecting candidates from the command line.

`warden approve ID` takes the same path as an operator's edit: it writes the id into
`models.MODEL.approval.approved` of the config file (comments and layout kept, by tomlkit),
checks the result still validates, and replaces the file atomically; the running daemon
notices the change and swaps. Before it writes, it scores champion and candidate on the rows
labelled since the candidate's cut-off (`correctors.validation.fresh`) and refuses a candidate
that has become significantly worse; `--force` writes anyway and records that (an
`approval_forced` event, actor operator, with the figures), and the daemon honours a forced
approval that it would otherwise refuse. A withdrawn candidate is refused with the reason of its
withdrawal. `warden reject ID` records the rejection in the store and takes
the id out of the approved list if it is there.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from sqlalchemy import Engine
from sqlmodel import select

from correctors.swap import APPROVABLE, SwapRefused, reject, withdrawal_reason
from correctors.validation.fresh import FreshProof, WorseOnFreshRows, prove_on_fresh_rows
from storage.audit import record_event
from storage.db import session_scope
from storage.registry import ModelRegistry
from storage.tables import Candidate, CandidateStatus, Event
from watcher.config import ConfigError, ModelConfig, load_config

FORCED_EVENT = "approval_forced"


@dataclass(frozen=True)
class Approval:
    """What `warden approve` did: the id written (or already there), the fresh-row figures,
    and whether a refusal was overridden."""

    candidate_id: str
    added: bool
    proof: FreshProof
    forced: bool


def candidate(engine: Engine, candidate_id: str) -> Candidate:
    with session_scope(engine) as session:
        found = session.get(Candidate, candidate_id)
        if found is None:
            raise SwapRefused(f"no candidate with id {candidate_id!r}")
        session.expunge(found)
        return found


def approvable(engine: Engine, candidate_id: str, proof: FreshProof | None = None) -> Candidate:
    """The candidate, if its status allows an approval; otherwise SwapRefused saying why (with
    the fresh-row figures, when given)."""
    cand = candidate(engine, candidate_id)
    figures = "" if proof is None else f" ({proof.sentence()})"
    if cand.status == CandidateStatus.WITHDRAWN:
        why = withdrawal_reason(engine, candidate_id) or "its incident resolved by itself"
        raise SwapRefused(
            f"{candidate_id} is withdrawn and can no longer be approved: {why}{figures}"
        )
    if cand.status not in APPROVABLE:
        raise SwapRefused(
            f"{candidate_id} is {cand.status}: only validated candidates can be approved{figures}"
        )
    return cand


def fresh_proof(
    engine: Engine, registry: ModelRegistry, cand: Candidate, model: ModelConfig
) -> FreshProof:
    """Champion and candidate on the rows labelled since the candidate's cut-off."""
    settings = model.correction
    return prove_on_fresh_rows(
        engine,
        registry,
        cand.model,
        cand.version,
        alpha=settings.paired_alpha,
        max_rows=settings.max_rows,
    )


def approve(config: Path, engine: Engine, candidate_id: str, *, force: bool = False) -> Approval:
    """`warden approve`: refuse a withdrawn candidate, or (unless forced) one significantly
    worse on fresh rows; otherwise write its id into the config's approved list."""
    cand = candidate(engine, candidate_id)
    if cand.status not in (*APPROVABLE, CandidateStatus.WITHDRAWN.value):
        approvable(engine, candidate_id)  # refuses, saying why
    cfg = load_config(config)
    model = cfg.models.get(cand.model)
    if model is None:
        raise ConfigError(f"{config}: models.{cand.model} is not in this config file")
    proof = fresh_proof(engine, ModelRegistry(cfg.storage.registry), cand, model)
    approvable(engine, candidate_id, proof)
    forced = force and proof.significantly_worse
    if proof.significantly_worse and not force:
        raise WorseOnFreshRows(candidate_id, proof)
    added = approve_in_config(config, engine, candidate_id)
    if forced:
        record_forced(engine, cand, proof)
    return Approval(candidate_id, added, proof, forced)


def record_forced(engine: Engine, cand: Candidate, proof: FreshProof) -> None:
    with session_scope(engine) as session:
        record_event(
            session,
            FORCED_EVENT,
            actor="operator",
            model=cand.model,
            subject=cand.id,
            forced=True,
            fresh=proof.to_dict(),
            summary=proof.sentence(),
        )


def was_forced(engine: Engine, candidate_id: str) -> bool:
    """An operator approved this candidate with `--force` (the daemon then swaps it even
    when the fresh rows say it is worse)."""
    with session_scope(engine) as session:
        query = select(Event).where(Event.kind == FORCED_EVENT, Event.subject == candidate_id)
        return session.exec(query).first() is not None


def approve_in_config(config: Path, engine: Engine, candidate_id: str) -> bool:
    """Add `candidate_id` to its model's approved list; False if it was already there."""
    cand = approvable(engine, candidate_id)
    doc = tomlkit.parse(config.read_text(encoding="utf-8"))
    models = doc.get("models", {})
    if cand.model not in models:
        raise ConfigError(f"{config}: models.{cand.model} is not in this config file")
    model = models[cand.model]
    if "approval" not in model:
        model["approval"] = tomlkit.table()
    approval = model["approval"]
    approved = approval.get("approved")
    if approved is None:
        approved = tomlkit.array()
        approval["approved"] = approved
    if candidate_id in [str(a) for a in approved]:
        return False
    approved.append(candidate_id)
    _replace_checked(config, tomlkit.dumps(doc))
    return True


def reject_candidate(config: Path, engine: Engine, candidate_id: str, reason: str) -> None:
    """Reject in the store (actor operator) and drop the id from the approved list."""
    reject(engine, candidate_id, actor="operator", reason=reason)
    doc = tomlkit.parse(config.read_text(encoding="utf-8"))
    cand = candidate(engine, candidate_id)
    approval = doc.get("models", {}).get(cand.model, {}).get("approval", {})
    approved = approval.get("approved")
    if approved is not None and candidate_id in [str(a) for a in approved]:
        approval["approved"] = [a for a in approved if str(a) != candidate_id]
        _replace_checked(config, tomlkit.dumps(doc))


def _replace_checked(config: Path, text: str) -> None:
    """Write beside the file, validate that copy, then rename over the original (atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=".warden-", suffix=".toml", dir=config.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        load_config(tmp)  # raises ConfigError naming the key; the original stays untouched
        keep_mode_and_owner(config, Path(tmp))
        os.replace(tmp, config)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def keep_mode_and_owner(original: Path, replacement: Path) -> None:
    """The rewritten file keeps the original's permissions (mkstemp makes 0600) and, when we
    may (root), its owner: a daemon running as another user must still read it."""
    info = original.stat()
    os.chmod(replacement, info.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(replacement, info.st_uid, info.st_gid)
