"""Several daemons, one store: the leases that make one daemon at a time run a model's checks,
corrections and approvals (and retention), and the heartbeat row `warden status` reads."""

from __future__ import annotations

import os
import socket
import threading
import uuid

import structlog

from storage.db import session_scope
from storage.leases import acquire, release_all, renew_all
from storage.tables import DaemonHeartbeat, utcnow
from watcher.intake.consumer import IngestStats

log = structlog.get_logger("warden.daemon")
LEASE_TTL_S = 30.0  # a dead daemon's models are taken over after this long


class Presence:
    """This daemon's identity in the store: its leases and its heartbeat row."""

    def __init__(self, engine, stats: IngestStats, stop_event: threading.Event) -> None:
        self.engine = engine
        self.stats = stats
        self.stop_event = stop_event
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.started_at = utcnow()
        self.leases: list[str] = []

    def holds(self, lease: str) -> bool:
        """Take or keep `lease`; False while another live daemon holds it."""
        try:
            held = acquire(self.engine, lease, self.holder, LEASE_TTL_S)
        except Exception:  # noqa: BLE001 - no store, no lease: do nothing this round
            log.warning("lease_unavailable", lease=lease, exc_info=True)
            return False
        if held and lease not in self.leases:
            self.leases.append(lease)
            log.info("lease_taken", lease=lease, holder=self.holder)
        elif not held and lease in self.leases:
            self.leases.remove(lease)
            log.warning("lease_lost", lease=lease, holder=self.holder)
        return held

    def heartbeat(self) -> None:
        """Renew held leases and publish this daemon's intake state for `warden status`."""
        stats = self.stats
        try:
            if not self.stop_event.is_set():
                self.leases = renew_all(self.engine, self.holder, LEASE_TTL_S)
            with session_scope(self.engine) as session:
                session.merge(
                    DaemonHeartbeat(
                        id=self.holder,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        started_at=self.started_at,
                        heartbeat_at=utcnow(),
                        state=stats.state,
                        consumed=stats.consumed,
                        predictions=stats.predictions,
                        labels=stats.labels,
                        dead_letters=stats.dead_letters,
                        lag=stats.lag,
                        partitions=stats.partitions,
                        leases=[] if self.stop_event.is_set() else self.leases,
                    )
                )
        except Exception:  # noqa: BLE001 - the intake keeps going; the store may be down
            log.warning("heartbeat_failed", ingest_state=stats.state, exc_info=True)

    def leave(self) -> None:
        """A clean stop hands the leases over at once and writes a last heartbeat."""
        try:
            release_all(self.engine, self.holder)
            self.heartbeat()
        except Exception:  # noqa: BLE001 - the store may be the reason we stop
            log.warning("final_heartbeat_failed", exc_info=True)
