"""Config of each monitored model (checks and their schedules, correction, approval), the
daemon's start-up settings, and the whole file (`WardenConfig`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from correctors.settings import CorrectionConfig, ModelDefinition, Strict
from watcher.config.sections import (
    NAME_PATTERN,
    AlertsConfig,
    HttpConfig,
    KafkaConfig,
    StorageConfig,
)


class ScheduleConfig(Strict):
    """When one kind of check runs: every N seconds, or on a crontab line (UTC)."""

    interval_seconds: float | None = Field(None, gt=0)
    cron: str | None = Field(None, description='crontab, e.g. "*/5 * * * *" (UTC)')

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        if (self.interval_seconds is None) == (self.cron is None):
            raise ValueError("set exactly one of interval_seconds or cron")
        if self.cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.cron, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"cron {self.cron!r}: {exc}") from exc
        return self


class SchedulesConfig(Strict):
    """Per check kind; a kind left out runs every `checks.interval_seconds`."""

    drift: ScheduleConfig | None = None
    error: ScheduleConfig | None = None
    bias: ScheduleConfig | None = None


class PinnedWindow(Strict):
    """An earlier stretch of stored traffic used as the reference instead of the reference set."""

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> PinnedWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class ChecksConfig(Strict):
    interval_seconds: float = Field(60.0, gt=0, description="default schedule of every kind")
    schedules: SchedulesConfig = SchedulesConfig()
    window: int = Field(2000, gt=0, description="the last N predictions form the current window")
    window_minutes: float | None = Field(
        None, gt=0, description="instead: the last T minutes (at most `window` rows)"
    )
    pinned_reference: PinnedWindow | None = Field(
        None, description="compare with this earlier window instead of the reference set"
    )
    min_rows: int = Field(200, gt=0, description="skip (with a recorded reason) below this")
    min_labelled: int = Field(200, gt=0, description="quality is checked from this many labels")
    thresholds: Literal["calibrated", "fixed"] = Field(
        "calibrated",
        description="calibrated: each figure's normal range is learnt from reference chunks "
        "of the window's size; fixed: the absolute thresholds below",
    )
    calibration_rounds: int = Field(
        12, ge=5, description="reference chunks drawn to calibrate drift (each one Evidently run)"
    )
    calibration_sigmas: float = Field(3.0, gt=0, description="width of a normal range")
    calibration_chunks: Literal["auto", "contiguous", "random"] = Field(
        "auto",
        description="contiguous: every other reference chunk is a run of consecutive rows (an "
        "ordered reference: time, season, batch), the others random rows; random: every chunk "
        "random rows; auto: contiguous when the reference has an order (reference_order_column, "
        "or a ts/timestamp/time/date column), else random",
    )
    reference_order_column: str | None = Field(
        None,
        description="a timestamp or order column of the reference to sort by before "
        "chunking (default: the file's row order)",
    )
    drift_method: str | None = Field(
        None, description="Evidently stattest for every column (e.g. psi, wasserstein, ks)"
    )
    drift_threshold: float | None = Field(None, gt=0, description="that method's threshold")
    drift_share: float = Field(0.3, gt=0, le=1, description="fixed: share of drifted columns")
    min_drifted_columns: int = Field(
        1, gt=0, description="calibrated: columns outside their normal range that fail the check"
    )
    max_accuracy_drop: float = Field(0.05, ge=0, le=1, description="fixed: vs the reference")
    min_accuracy: float | None = Field(None, ge=0, le=1, description="absolute floor, any mode")
    max_mae_increase: float = Field(0.25, ge=0, description="fixed, regression: vs reference")
    max_mae: float | None = Field(None, gt=0, description="absolute ceiling (regression)")
    group_attributes: list[str] | None = Field(
        None, description="group keys checked for bias (default: every key seen in `groups`)"
    )
    min_group_rows: int = Field(50, gt=0, description="smaller groups are reported, not judged")
    max_parity_gap: float = Field(0.1, ge=0, le=1, description="fixed: selection-rate gap")
    max_opportunity_gap: float = Field(0.1, ge=0, le=1, description="fixed: TPR gap")
    max_quality_gap: float = Field(0.1, ge=0, description="fixed: accuracy (or MAE) gap")
    bias_alpha: float = Field(
        0.01, gt=0, lt=1, description="a gap must also be significant in the window itself"
    )
    slice_bins: int = Field(5, ge=2, description="quantile bins per numeric feature")
    slice_min_rows: int = Field(30, gt=0)
    slice_alpha: float = Field(0.01, gt=0, lt=1, description="significance, Bonferroni-adjusted")
    resolve_after: int = Field(3, gt=0, description="clean checks that resolve an incident")
    cooldown_minutes: float = Field(
        30.0, ge=0, description="a kind that resolved this recently reopens without a new alert"
    )
    max_flagged_ids: int = Field(5000, gt=0, description="sample ids kept in an incident")


class ApprovalConfig(Strict):
    mode: Literal["auto", "manual"] = "manual"
    approved: list[str] = Field(default_factory=list)
    watch_checks: int = Field(
        3, ge=0, description="judged quality checks of a new champion watched after a swap"
    )
    watch_tolerance: float = Field(
        0.02,
        ge=0,
        description="roll back when live accuracy falls this far below the old champion's",
    )


class ModelConfig(ModelDefinition):
    """A monitored model: its definition plus how it is checked, corrected and approved."""

    checks: ChecksConfig = ChecksConfig()
    correction: CorrectionConfig = CorrectionConfig()
    approval: ApprovalConfig = ApprovalConfig()


class DaemonConfig(Strict):
    """How `warden run` starts: what it waits for before it gives up with one line."""

    startup_timeout_s: float = Field(
        15.0,
        gt=0,
        description=(
            "how long the start waits for the broker and the database to answer before it "
            "exits with the address it tried"
        ),
    )


class WardenConfig(Strict):
    kafka: KafkaConfig = KafkaConfig()
    storage: StorageConfig = StorageConfig()
    alerts: AlertsConfig = AlertsConfig()
    http: HttpConfig = HttpConfig()
    daemon: DaemonConfig = DaemonConfig()
    models: dict[str, ModelConfig] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        import re

        for name in models:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"model name {name!r} must match {NAME_PATTERN}")
        return models
