"""The on-disk model registry: `<root>/<model>/<version>/{model.onnx,weights.pt,card.json}`.

`<root>/<model>/ACTIVE` names the serving version. It changes only by write-to-temp + fsync +
atomic rename, so a reader (the onnxruntime server) never sees a half-written pointer, and
every change is appended to `history.jsonl`, from which rollback computes the previous version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ONNX_FILE, WEIGHTS_FILE, CARD_FILE = "model.onnx", "weights.pt", "card.json"
PROFILE_JSON, PROFILE_ARRAYS = "profile.json", "profile.npz"  # the reference profile


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown version, unsafe name, no history)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write-to-temp + fsync + rename: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see either the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Activation:
    """One line of a model's activation history."""

    action: str  # "activate" | "rollback"
    version: str
    actor: str
    ts: str


class ModelRegistry:
    """Versions of each model on disk, plus the ACTIVE pointer and its history."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    # -- paths -----------------------------------------------------------------------------
    def _safe(self, *names: str) -> Path:
        """Join names under the root, refusing anything that could escape it."""
        for name in names:
            if not NAME.match(name) or name in {".", ".."}:
                raise RegistryError(f"unsafe registry name {name!r}")
        path = self.root.joinpath(*names).resolve()
        if not path.is_relative_to(self.root):
            raise RegistryError(f"path {path} escapes the registry root {self.root}")
        return path

    def _inside(self, path: Path) -> Path:
        """Refuse a file that is (or whose link chain ends) outside the root: a symlinked
        model.onnx, card.json, ACTIVE or history.jsonl must not be read or written through."""
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise RegistryError(f"path {path} cannot be resolved: {exc}") from exc
        if not resolved.is_relative_to(self.root):
            raise RegistryError(f"path {path} resolves to {resolved}, outside {self.root}")
        return path

    def model_dir(self, model: str) -> Path:
        return self._safe(model)

    def version_dir(self, model: str, version: str) -> Path:
        return self._safe(model, version)

    def onnx_path(self, model: str, version: str) -> Path:
        return self._inside(self.version_dir(model, version) / ONNX_FILE)

    def weights_path(self, model: str, version: str) -> Path:
        return self._inside(self.version_dir(model, version) / WEIGHTS_FILE)

    # -- the reference profile (watcher/checks/profile.py writes and reads its content) -------
    def write_profile(self, model: str, version: str, meta: dict[str, Any], arrays: bytes) -> None:
        """Beside the version's card: the arrays (.npz) first, then the JSON that names them,
        so a reader never takes a new JSON with old arrays (the JSON's token says which)."""
        vdir = self.version_dir(model, version)
        atomic_write_bytes(self._inside(vdir / PROFILE_ARRAYS), arrays)
        atomic_write_text(self._inside(vdir / PROFILE_JSON), json.dumps(meta, default=str))

    def read_profile(self, model: str, version: str) -> tuple[dict[str, Any], Path] | None:
        """The profile's JSON and the path of its arrays; None where none was written."""
        vdir = self.version_dir(model, version)
        meta, arrays = self._inside(vdir / PROFILE_JSON), self._inside(vdir / PROFILE_ARRAYS)
        if not (meta.is_file() and arrays.is_file()):
            return None
        return json.loads(meta.read_text(encoding="utf-8")), arrays

    def _model_file(self, model: str, name: str) -> Path:
        return self._inside(self.model_dir(model) / name)

    # -- versions --------------------------------------------------------------------------
    def versions(self, model: str) -> list[str]:
        mdir = self.model_dir(model)
        if not mdir.is_dir():
            return []
        return sorted(p.name for p in mdir.iterdir() if (p / CARD_FILE).is_file())

    def next_version(self, model: str) -> str:
        numbers = [int(v[1:]) for v in self.versions(model) if re.fullmatch(r"v\d+", v)]
        return f"v{max(numbers, default=0) + 1}"

    def write_card(self, model: str, version: str, card: dict[str, Any]) -> Path:
        """Write card.json last: a version directory counts only once its card exists."""
        vdir = self.version_dir(model, version)
        onnx = self.onnx_path(model, version)
        if onnx.is_file():
            card = {**card, "onnx_sha256": sha256_file(onnx)}
        path = self._inside(vdir / CARD_FILE)
        atomic_write_text(path, json.dumps(card, indent=2, sort_keys=True, default=str))
        return path

    def card(self, model: str, version: str) -> dict[str, Any]:
        path = self._inside(self.version_dir(model, version) / CARD_FILE)
        if not path.is_file():
            raise RegistryError(f"model {model!r} has no version {version!r} in {self.root}")
        return json.loads(path.read_text(encoding="utf-8"))

    def verify(self, model: str, version: str) -> None:
        """Refuse a version whose ONNX file does not match the sha256 in its card."""
        expected = self.card(model, version).get("onnx_sha256")
        actual = sha256_file(self.onnx_path(model, version))
        if expected != actual:
            raise RegistryError(f"{model}/{version}: model.onnx sha256 {actual} != card {expected}")

    # -- the ACTIVE pointer ----------------------------------------------------------------
    def active(self, model: str) -> str | None:
        path = self._model_file(model, "ACTIVE")
        return path.read_text(encoding="utf-8").strip() if path.is_file() else None

    def history(self, model: str) -> list[Activation]:
        path = self._model_file(model, "history.jsonl")
        if not path.is_file():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [Activation(**json.loads(line)) for line in lines if line.strip()]

    def _append_history(self, model: str, entry: Activation) -> None:
        path = self._model_file(model, "history.jsonl")
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry.__dict__) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _serving_stack(self, model: str) -> list[str]:
        """Versions in the order they went live, with rolled-back ones popped off."""
        stack: list[str] = []
        for entry in self.history(model):
            if entry.action == "activate":
                stack.append(entry.version)
            elif entry.action == "rollback" and stack:
                stack.pop()
        return stack

    def activate(self, model: str, version: str, *, actor: str) -> None:
        """Point ACTIVE at `version` atomically (after checking its ONNX file is intact)."""
        self.verify(model, version)
        self._append_history(model, Activation("activate", version, actor, _now()))
        atomic_write_text(self._model_file(model, "ACTIVE"), version + "\n")

    def previous(self, model: str) -> str | None:
        stack = self._serving_stack(model)
        return stack[-2] if len(stack) >= 2 else None

    def rollback(self, model: str, *, actor: str) -> tuple[str, str]:
        """Restore the version that served before the current one; returns (from, to)."""
        current, target = self.active(model), self.previous(model)
        if current is None or target is None:
            raise RegistryError(f"model {model!r} has no earlier version to roll back to")
        self.verify(model, target)
        self._append_history(model, Activation("rollback", current, actor, _now()))
        atomic_write_text(self._model_file(model, "ACTIVE"), target + "\n")
        return current, target


def _now() -> str:
    return datetime.now(UTC).isoformat()
