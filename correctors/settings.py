"""What a correction needs to know about a model and how to correct it (typed, validated)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CorrectionConfig(Strict):
    enabled: bool = True
    min_flagged: int = Field(100, gt=0, description="labelled window rows needed to fine-tune")
    epochs: int = Field(20, gt=0)
    patience: int = Field(3, gt=0, description="early stopping on the held-out split")
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, gt=0)
    early_stopping_fraction: float = Field(0.2, gt=0, lt=1)
    replay_ratio: float = Field(3.0, ge=0, description="replayed reference rows per flagged row")
    holdout_fraction: float = Field(0.3, gt=0, lt=1, description="recent rows kept for the gate")
    reference_holdout_fraction: float = Field(0.3, gt=0, lt=1)
    min_improvement: float = Field(0.01, ge=0, description="accuracy gain needed on recent data")
    forgetting_tolerance: float = Field(
        0.02, ge=0, description="accuracy loss allowed on reference"
    )
    group_gap_tolerance: float = Field(
        0.03, ge=0, description="per-group accuracy loss, and gap widening, the gate allows"
    )
    shift_confidence: float = Field(
        0.6, gt=0.5, lt=1, description="both truths this sure, and disagreeing: contradicted"
    )
    shift_min_share: float = Field(0.05, ge=0, le=1, description="below: covariate shift only")
    parity_tolerance: float = Field(1e-4, gt=0)
    seed: int = 0
    trainable: list[str] | None = Field(
        None,
        min_length=1,
        description=(
            "dotted parameter-name prefixes to train (e.g. ['net.4'] for the head; a prefix "
            "matches the name itself or anything below it); the rest is frozen. None: train all"
        ),
    )
    weight_decay: float = Field(0.0, ge=0, description="decoupled weight decay (AdamW)")
    l2_sp: float = Field(
        0.0,
        ge=0,
        description="L2-SP pull toward the champion: loss += l2_sp * sum((w - w0)^2), trainable w",
    )
    time_budget_s: float = Field(
        300.0,
        gt=0,
        description=(
            "training stops after the epoch that crosses it; a worker still running "
            "30 s past it is killed"
        ),
    )
    memory_budget_mb: int = Field(
        4096,
        gt=0,
        description=(
            "address space the worker may add beyond its baseline (Python, torch, the CUDA "
            "context); enforced with RLIMIT_AS, so host memory only, never GPU memory"
        ),
    )
    worker: bool = Field(
        True, description="fine-tune in a separate process: a crash or OOM cannot kill the daemon"
    )


class ModelDefinition(Strict):
    """A model as the correctors see it: how to build it, encode it and what truth it learnt."""

    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    factory_kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: Path | None = None
    task: Literal["classification", "regression"] = "classification"
    reference: Path
    label_column: str = "label"
    classes: list[str] | None = Field(
        None, description="class names in the model's output order (default: sorted labels)"
    )
    numeric_features: list[str] = Field(default_factory=list)
    categorical_features: list[str] = Field(default_factory=list)
    text_features: list[str] = Field(
        default_factory=list, description="free-text columns, encoded as hashed bags of words"
    )
    text_buckets: int = Field(256, ge=8, le=65536, description="hash slots per text column")

    @model_validator(mode="after")
    def _has_features(self):
        if not (self.numeric_features or self.categorical_features or self.text_features):
            raise ValueError("declare numeric_features, categorical_features or text_features")
        kinds = [self.numeric_features, self.categorical_features, self.text_features]
        overlap = {f for i, a in enumerate(kinds) for b in kinds[i + 1 :] for f in set(a) & set(b)}
        if overlap:
            raise ValueError(f"features declared under two kinds: {sorted(overlap)}")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features, *self.text_features]
