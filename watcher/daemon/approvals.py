"""Approving and rejecting candidates from the command line.

`warden approve ID` takes the same path as an operator's edit: it writes the id into
`models.MODEL.approval.approved` of the config file (comments and layout kept, by tomlkit),
checks the result still validates, and replaces the file atomically; the running daemon
notices the change and swaps. `warden reject ID` records the rejection in the store and takes
the id out of the approved list if it is there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import tomlkit
from sqlalchemy import Engine

from correctors.swap import APPROVABLE, SwapRefused, reject
from storage.db import session_scope
from storage.tables import Candidate
from watcher.config import ConfigError, load_config


def candidate(engine: Engine, candidate_id: str) -> Candidate:
    with session_scope(engine) as session:
        found = session.get(Candidate, candidate_id)
        if found is None:
            raise SwapRefused(f"no candidate with id {candidate_id!r}")
        session.expunge(found)
        return found


def approve_in_config(config: Path, engine: Engine, candidate_id: str) -> bool:
    """Add `candidate_id` to its model's approved list; False if it was already there."""
    cand = candidate(engine, candidate_id)
    if cand.status not in APPROVABLE:
        raise SwapRefused(
            f"{candidate_id} is {cand.status}: only validated candidates can be approved"
        )
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
