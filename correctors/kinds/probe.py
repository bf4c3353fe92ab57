"""The shift guard's model of the old truth for a champion that is not a torch module.

The guard (`correctors.validation.guards.contradicted_region`) tunes the champion's torch
module on the recent rows alone and compares it with the champion on the reference: where they
disagree, the recent labels contradict the old truth. A scikit-learn or boosted champion has no
module to tune, so it gets a small MLP distilled from it on the reference (trained to answer
as the champion answers), which the guard then tunes as it would tune a torch champion. An
untrained MLP tuned on recent rows alone disagreed with an SVC champion over a third of the
demo's reference, and the gate then judged forgetting on rows the new rule had changed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from correctors.kinds import adapter_for
from correctors.models.champion import Champion
from correctors.settings import CorrectionConfig
from correctors.training.finetune import fine_tune
from correctors.zoo import mlp_classifier

PROBE_EPOCHS = 30


def with_distilled_probe(
    champion: Champion, x_ref: np.ndarray, settings: CorrectionConfig
) -> Champion:
    """`champion` with `torch_model` replaced by an MLP distilled from it on `x_ref`."""
    if champion.kind == "torch":
        return champion
    scores = adapter_for(champion.kind).scores(champion.native, x_ref, champion.task)
    if champion.task == "regression":
        targets = scores[:, 0].astype(np.float32)
    else:
        targets = scores.argmax(axis=1).astype(np.int64)
    torch.manual_seed(settings.seed)
    probe = mlp_classifier(x_ref.shape[1], scores.shape[1])
    quick = CorrectionConfig(
        epochs=PROBE_EPOCHS, patience=3, seed=settings.seed, worker=False, l2_sp=0.0
    )
    distilled = fine_tune(probe, x_ref, targets, quick).model.cpu().eval()
    return dataclasses.replace(champion, torch_model=distilled)
