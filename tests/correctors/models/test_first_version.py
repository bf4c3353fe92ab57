"""`train_first_version` is the seeded build-and-train the demo, the benches and onboarding
share: the same seed and rows give the same weights as building and fine-tuning by hand."""

import numpy as np
import torch

from correctors.models.first_version import train_first_version
from correctors.settings import CorrectionConfig
from correctors.training.finetune import fine_tune
from correctors.zoo import mlp_classifier


def test_first_version_is_the_seeded_build_and_fine_tune(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    weights = tmp_path / "v1" / "weights.pt"
    result = train_first_version(
        lambda: mlp_classifier(4, 2), x, y, epochs=5, patience=2, seed=3, weights=weights
    )
    torch.manual_seed(3)
    by_hand = fine_tune(mlp_classifier(4, 2), x, y, CorrectionConfig(epochs=5, patience=2, seed=3))
    saved = torch.load(weights, weights_only=True)
    for name, value in by_hand.model.state_dict().items():
        assert torch.equal(value, result.model.state_dict()[name]), name
        assert torch.equal(value, saved[name]), name
    assert result.epochs_run == by_hand.epochs_run
