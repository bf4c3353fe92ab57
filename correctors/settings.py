"""What a correction needs to know about a model and how to correct it (typed, validated)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Strategy = Literal["fine_tune", "interpolate", "retrain"]
STRATEGY_NAMES: tuple[Strategy, ...] = ("fine_tune", "interpolate", "retrain")
ModelKind = Literal["torch", "sklearn", "lightgbm", "xgboost"]


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CorrectionConfig(Strict):
    enabled: bool = True
    min_flagged: int = Field(
        100, gt=0, description="labelled errors since the change needed to start a correction"
    )
    max_rows: int = Field(
        20000,
        gt=0,
        description="labelled rows since the change a correction trains and is judged on "
        "(the newest, when more have arrived)",
    )
    strategies: list[Strategy] = Field(
        default_factory=lambda: list(STRATEGY_NAMES),
        min_length=1,
        description="what each attempt trains; the gate picks the best candidate that passes",
    )
    max_attempts: int = Field(
        5,
        gt=0,
        description="attempts per incident before a person is needed: those the gate rejected "
        "and those whose training failed (worker crash, budget) both count",
    )
    retry_growth: float = Field(
        1.5,
        gt=1,
        description="another attempt once the labelled rows since the change have grown by "
        "this factor since the last attempt ...",
    )
    retry_after_rows: int | None = Field(
        None, gt=0, description="... or by this many rows, whichever comes first"
    )
    epochs: int = Field(200, gt=0, description="a cap: training stops when it converges")
    patience: int = Field(
        6, gt=0, description="epochs without a better held-out loss before stopping"
    )
    lr_plateau_factor: float = Field(
        0.5, gt=0, le=1, description="the learning rate is multiplied by this on a plateau"
    )
    learning_rate: float = Field(1e-3, gt=0)
    retrain_learning_rate: float = Field(
        3e-3, gt=0, description="learning rate of the retrain strategy (fresh weights)"
    )
    batch_size: int = Field(128, gt=0)
    early_stopping_fraction: float = Field(0.2, gt=0, lt=1)
    replay_ratio: float = Field(3.0, ge=0, description="replayed reference rows per flagged row")
    holdout_fraction: float = Field(0.3, gt=0, lt=1, description="recent rows kept for the gate")
    holdout_split: Literal["newest", "random"] = Field(
        "newest",
        description="which recent rows the gate keeps: the newest (the present truth, also "
        "under a gradual drift still under way) or a seeded random share",
    )
    reference_holdout_fraction: float = Field(0.3, gt=0, lt=1)
    min_improvement: float = Field(
        0.01,
        ge=0,
        description="gain needed on the recent holdout (also paired-significant at "
        "paired_alpha, and better than the best constant answer)",
    )
    forgetting_tolerance: float = Field(
        0.02,
        ge=0,
        description="loss allowed on the guarded reference, counted over the whole reference "
        "holdout (beyond it, a loss fails when the paired test finds it real at paired_alpha)",
    )
    group_gap_tolerance: float = Field(
        0.03, ge=0, description="per-group accuracy loss, and gap widening, the gate allows"
    )
    paired_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="a group loss or a wider gap fails only when the paired test (McNemar, "
        "paired t) is significant at this level, Bonferroni-corrected over groups/attributes",
    )
    bias_gap_rule: Literal["narrower", "not_wider", "significant"] = Field(
        "narrower",
        description="what a candidate made for a bias incident must do to that gap: be "
        "narrower, not be wider, or be significantly narrower (paired, p < 0.05)",
    )
    shift_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="a region's reference rows leave the no-forgetting guard when recent labels "
        "there differ at this level (Benjamini-Hochberg over the regions tested)",
    )
    shift_min_effect: float = Field(
        0.1,
        gt=0,
        description="... and by at least this much (a fall in agreement with the old rule; "
        "for regression, a residual shift in standard deviations of the reference target)",
    )
    shift_min_recent_rows: int = Field(
        10, gt=1, description="recent labelled rows a region needs to be tested"
    )
    shift_min_reference_rows: int = Field(
        3, gt=1, description="reference rows beside them a region needs to be tested"
    )
    review_excluded_share: float = Field(
        0.6,
        gt=0,
        le=1,
        description="a candidate that loses on the full reference while more than this share "
        "of it left the guard needs a person (not auto-swapped) ...",
    )
    review_reached_share: float = Field(
        0.9,
        gt=0,
        le=1,
        description="... unless recent rows reach at least this share of the reference (a "
        "change everywhere, seen everywhere)",
    )
    parity_tolerance: float = Field(1e-4, gt=0)
    flagged_weight: float = Field(
        1.0,
        ge=1,
        description=(
            "scikit-learn, LightGBM, XGBoost: sample weight of the recent training rows the "
            "champion gets wrong (every other row weighs 1). On the demo's shift an SVC refit "
            "with 2 lost 4 points on the guarded reference and failed the gate; with 1 it passed"
        ),
    )
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
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads per training run; None: 1 for models under 1M "
        "parameters (their ops are too small to split, and strategies train side by side), "
        "torch's default for larger ones",
    )


class ModelDefinition(Strict):
    """A model as the correctors see it: how to build it, encode it and what truth it learnt."""

    kind: ModelKind = Field(
        "torch",
        description=(
            "torch: `factory` + a state dict; sklearn: a skops file; lightgbm: a booster's "
            "native text model; xgboost: a booster's native JSON or UBJ file (`weights`)"
        ),
    )
    factory: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    factory_kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: Path | None = None
    trusted_types: list[str] = Field(
        default_factory=list,
        description=(
            "sklearn: types the skops file may hold beyond skops' own trusted set "
            "(`skops.io.get_untrusted_types(file=…)` lists them); any other is refused"
        ),
    )
    task: Literal["classification", "regression"] = "classification"
    reference: Path
    label_column: str = "label"
    classes: list[str] | None = Field(
        None, description="class names in the model's output order (default: sorted labels)"
    )
    numeric_features: list[str] = Field(
        default_factory=list,
        description=(
            "standard encoding: standardised on the reference, missing values become the mean; "
            "raw: passed as float32, missing values as NaN"
        ),
    )
    categorical_features: list[str] = Field(
        default_factory=list,
        description=(
            "standard encoding: one-hot over the vocabulary plus one `<unknown>` slot for "
            "unseen and missing values; raw: one integer code each"
        ),
    )
    text_features: list[str] = Field(
        default_factory=list, description="free-text columns, encoded as hashed bags of words"
    )
    text_buckets: int = Field(256, ge=8, le=65536, description="hash slots per text column")
    encoding: Literal["standard", "raw"] = Field(
        "standard",
        description=(
            "standard: numeric standardised on the reference (missing → the mean, clipped at "
            "±5 sd), categorical one-hot plus an `<unknown>` slot; raw: numeric as float32 in "
            "the declared order (missing → NaN), categorical as integer codes (position in the "
            "vocabulary, unseen and missing → its length), for a model that does its own "
            "preprocessing. Text is a hashed bag of words either way"
        ),
    )
    vocabularies: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "categorical feature → its values in code order (raw: value i gets code i); "
            "a feature left out takes the reference's values, sorted"
        ),
    )
    vocabularies_file: Path | None = Field(
        None, description="a JSON object of the same shape as `vocabularies`, from a file"
    )
    encoder_file: Path | None = Field(
        None,
        description=(
            "a fitted encoding written by `warden model encoder --fit-on FILE --output DIR`, "
            "used instead of fitting on the reference at the first start"
        ),
    )
    python_path: list[Path] = Field(
        default_factory=list,
        description="folders put on `sys.path` before the factory's module is imported",
    )

    @model_validator(mode="after")
    def _kind(self):
        if self.kind == "torch" and self.factory is None:
            raise ValueError('factory is required for kind = "torch"')
        if self.kind != "torch" and self.factory is not None:
            raise ValueError(f'factory is for kind = "torch", not {self.kind!r}: drop it')
        return self

    @model_validator(mode="after")
    def _has_features(self):
        if not (self.numeric_features or self.categorical_features or self.text_features):
            raise ValueError("declare numeric_features, categorical_features or text_features")
        kinds = [self.numeric_features, self.categorical_features, self.text_features]
        overlap = {f for i, a in enumerate(kinds) for b in kinds[i + 1 :] for f in set(a) & set(b)}
        if overlap:
            raise ValueError(f"features declared under two kinds: {sorted(overlap)}")
        return self

    @model_validator(mode="after")
    def _vocabularies(self):
        if self.vocabularies and self.vocabularies_file is not None:
            raise ValueError("set vocabularies or vocabularies_file, not both")
        for column, values in self.vocabularies.items():
            problem = vocabulary_problem(column, values, self.categorical_features)
            if problem:
                raise ValueError(f"vocabularies.{problem}")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features, *self.text_features]


def vocabulary_problem(column: str, values: list, categorical: list[str]) -> str | None:
    """Why a supplied vocabulary cannot be used (a message starting with its column), or None."""
    if column not in categorical:
        return f"{column}: not one of categorical_features {categorical}"
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return f"{column}: must be a list of strings"
    if not values:
        return f"{column}: is empty"
    repeated = sorted(v for v, n in Counter(values).items() if n > 1)
    if repeated:
        return f"{column}: values listed twice: {repeated}"
    return None
