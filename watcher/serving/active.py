"""Serving with onnxruntime that follows the registry's ACTIVE pointer.

A swap loads the new session beside the old one and switches between requests, so no request
sees a half-loaded model; the pointer itself is replaced atomically by the registry.

The pointer is looked at no more than every `refresh_s` seconds, and only read when its file
changed (inode, mtime, size: the registry replaces it by rename). Two ways to keep up:

* lazily: the request that finds the last look older than `refresh_s` looks (the demo);
* `start()`: a background thread looks and loads, so requests only read a reference and never
  pay for a look or a load (`warden serve`).

A version that fails to load (bad file, sha256 mismatch) is logged and retried after
`retry_s`; the version already loaded keeps serving meanwhile.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pandas as pd
import structlog

from correctors.models.runtime import OnnxModel
from storage.registry import ModelRegistry

log = structlog.get_logger("warden.serving")
REFRESH_S = 0.2
RETRY_S = 5.0


class NotReady(RuntimeError):
    """No version is loaded yet (no ACTIVE pointer, or its version cannot be loaded)."""


class ActiveModel:
    """The ACTIVE version of one model, loaded for onnxruntime; thread-safe."""

    def __init__(
        self,
        registry: ModelRegistry,
        model: str,
        *,
        refresh_s: float = REFRESH_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self.registry, self.model = registry, model
        self.refresh_s, self.retry_s = refresh_s, retry_s
        self._lock = threading.Lock()  # one look/load at a time; serving never waits on it
        self._current: OnnxModel | None = None
        self._pointer: tuple[int, int, int] | None = None  # ACTIVE's stat when last read
        self._next_look = 0.0
        self._failed: tuple[str, float] | None = None  # (version, retry after)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.swaps = 0
        self.last_error: str | None = None

    # -- serving ----------------------------------------------------------------------------
    def current(self) -> OnnxModel:
        """The serving version; raises NotReady while none is loaded."""
        loaded = self._current
        if self._thread is None:  # else the follower thread looks; requests only read
            if loaded is None:
                self._refresh(wait=True)  # first use: wait for the load or the reason it failed
            elif time.monotonic() >= self._next_look:
                self._refresh(wait=False)  # another thread is looking: serve what is loaded
        loaded = self._current
        if loaded is None:
            raise NotReady(self.last_error or f"model {self.model!r} is not loaded")
        return loaded

    def predict(self, frame: pd.DataFrame) -> tuple[str, list[str], np.ndarray]:
        served = self.current()
        labels, probs = served.predict(frame)
        return served.version, labels, probs

    def ready(self) -> tuple[bool, str]:
        """(True, "serving v3") once a version is loaded; else why not."""
        try:
            return True, f"serving {self.current().version}"
        except NotReady as exc:
            return False, str(exc)

    @property
    def version(self) -> str | None:
        loaded = self._current
        return None if loaded is None else loaded.version

    # -- following ACTIVE -------------------------------------------------------------------
    def _pointer_stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.registry.model_dir(self.model) / "ACTIVE")
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def refresh(self) -> bool:
        """Look at ACTIVE now (waiting for a look in progress); True if a new version loaded."""
        return self._refresh(wait=True, force=True)

    def _refresh(self, *, wait: bool, force: bool = False) -> bool:
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            now = time.monotonic()
            if not force and self._current is not None and now < self._next_look:
                return False  # another thread looked while this one waited
            self._next_look = now + self.refresh_s
            stat = self._pointer_stat()  # before reading: a change in between reads again
            if self._current is not None and stat == self._pointer:
                return False
            version = self.registry.active(self.model)
            if version is None:
                self.last_error = f"model {self.model!r} has no ACTIVE version"
                return False  # keep serving what is loaded, if anything
            if self._current is not None and self._current.version == version:
                self._pointer = stat
                return False
            if self._failed and self._failed[0] == version and now < self._failed[1]:
                return False
            return self._load(version, stat)
        except Exception as exc:  # noqa: BLE001 - a failed look keeps the loaded version
            self.last_error = f"cannot read the ACTIVE pointer of {self.model!r}: {exc}"
            log.warning("active_look_failed", model=self.model, error=repr(exc))
            return False
        finally:
            self._lock.release()

    def _load(self, version: str, stat: tuple[int, int, int] | None) -> bool:
        previous = self._current
        started = time.monotonic()
        try:
            fresh = OnnxModel.load(self.registry, self.model, version)  # beside the old one
            fresh.proba_encoded(np.zeros((1, fresh.encoder.width), dtype=np.float32))  # warm
        except Exception as exc:  # noqa: BLE001 - keep serving the loaded version
            self._failed = (version, time.monotonic() + self.retry_s)
            self.last_error = f"cannot load {self.model}/{version}: {exc}"
            log.warning("active_load_failed", model=self.model, version=version, error=repr(exc))
            return False
        self._current, self._pointer, self._failed = fresh, stat, None  # one reference swap
        self.last_error = None
        if previous is not None:
            self.swaps += 1
        log.info(
            "serving_version",
            model=self.model,
            version=version,
            previous=None if previous is None else previous.version,
            load_ms=round(1000 * (time.monotonic() - started), 1),
        )
        return True

    def start(self) -> ActiveModel:
        """Load now, then follow ACTIVE from a background thread (idempotent)."""
        if self._thread is not None:
            return self
        self._stop.clear()
        self._refresh(wait=True, force=True)

        def follow() -> None:
            while not self._stop.wait(self.refresh_s):
                self._refresh(wait=True, force=True)

        self._thread = threading.Thread(target=follow, name=f"active-{self.model}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(10)
