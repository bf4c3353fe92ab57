"""When checks run: kinds grouped by schedule, and the APScheduler trigger of each."""

from __future__ import annotations

from datetime import UTC
from typing import TypeAlias

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from watcher.checks.outcome import KINDS
from watcher.config import ModelConfig, ScheduleConfig

Trigger: TypeAlias = CronTrigger | IntervalTrigger


def check_schedules(model: ModelConfig) -> dict[ScheduleConfig, tuple[str, ...]]:
    """Check kinds grouped by schedule (a kind without one runs every interval_seconds)."""
    default = ScheduleConfig(interval_seconds=model.checks.interval_seconds, cron=None)
    grouped: dict[ScheduleConfig, tuple[str, ...]] = {}
    for kind in KINDS:
        schedule = getattr(model.checks.schedules, kind) or default
        grouped[schedule] = (*grouped.get(schedule, ()), kind)
    return grouped


def make_trigger(schedule: ScheduleConfig) -> Trigger:
    if schedule.cron is not None:
        return CronTrigger.from_crontab(schedule.cron, timezone=UTC)
    return IntervalTrigger(seconds=schedule.interval_seconds, timezone=UTC)
