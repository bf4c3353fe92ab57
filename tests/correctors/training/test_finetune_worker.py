"""Fine-tuning options and the worker process, with real torch and real spawned processes.

The misbehaving modules live at module level so the spawned worker can import them
(`tests.correctors.training.test_finetune_worker`); each misbehaves only after `after`
forward calls. With the data below (200 rows, 40 held out, batch 64) an epoch makes 4
calls, so `after=4` hits epoch 2.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from correctors.settings import CorrectionConfig
from correctors.training.finetune import fine_tune
from correctors.training.worker import FineTuneFailed, fine_tune_in_worker
from correctors.zoo import mlp_classifier

N_FEATURES = 8


class Misbehaving(nn.Module):
    """A small MLP whose forward crashes, raises, allocates or hangs after `after` calls."""

    def __init__(self, how: str, after: int = 4, size_mb: int = 4096):
        super().__init__()
        torch.manual_seed(0)
        self.net = mlp_classifier(N_FEATURES, 2, hidden=16)
        self.how, self.after, self.size_mb, self.calls = how, after, size_mb, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            if self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif self.how == "exit":
                os._exit(3)
            elif self.how == "raise":
                raise ValueError("boom in forward")
            elif self.how == "allocate":
                torch.ones(self.size_mb * 2**20, dtype=torch.uint8)
            elif self.how == "hang":
                time.sleep(120)
            elif self.how == "slow":
                time.sleep(0.05)
        return self.net(x)


def champion(n_outputs: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return mlp_classifier(N_FEATURES, n_outputs, hidden=16).eval()


def data(n: int = 200, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)


def settings(**kw) -> CorrectionConfig:
    return CorrectionConfig(**{"epochs": 5, "batch_size": 64, "patience": 50, **kw})


def states_equal(a: nn.Module, b: nn.Module, prefix: str = "") -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith(prefix))


@torch.no_grad()
def distance(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    return sum(float(((p - q) ** 2).sum()) for p, q in pairs)


def test_same_seed_same_weights_and_a_different_seed_differs():
    x, y = data()
    first = fine_tune(champion(), x, y, settings(seed=3))
    second = fine_tune(champion(), x, y, settings(seed=3))
    other = fine_tune(champion(), x, y, settings(seed=4))
    assert states_equal(first.model, second.model)
    assert first.train_loss == second.train_loss and first.val_loss == second.val_loss
    assert not states_equal(first.model, other.model)
    assert first.stopped_by == "epochs" and first.summary()["stopped_by"] == "epochs"


def test_worker_matches_in_process_and_relays_progress():
    x, y = data()
    cfg = settings(seed=7, weight_decay=0.01, l2_sp=0.1, trainable=["2", "4"])
    local = fine_tune(champion(), x, y, cfg.model_copy(update={"worker": False}))
    seen = []
    started = time.monotonic()
    remote = fine_tune_in_worker(champion(), x, y, cfg, on_epoch=lambda *a: seen.append(a))
    assert remote.worker and remote.worker_seconds <= time.monotonic() - started
    remote_state = remote.model.state_dict()
    for name, value in local.model.state_dict().items():
        assert torch.allclose(value, remote_state[name], atol=1e-6), name
    assert [e for e, _, _ in seen] == [1, 2, 3, 4, 5]
    assert np.allclose([t for _, t, _ in seen], local.train_loss)
    assert np.allclose(remote.val_loss, local.val_loss)
    assert remote.summary()["trainable_params"] == local.trainable_params == 16 * 16 + 16 + 34
    assert remote.frozen_params == local.frozen_params == N_FEATURES * 16 + 16
    assert not remote.model.training


def test_small_models_train_on_one_thread_and_the_setting_is_restored():
    x, y = data()
    before = torch.get_num_threads()
    auto = fine_tune(champion(), x, y, settings())
    assert auto.threads == 1 and auto.summary()["threads"] == 1  # 450 parameters: one thread
    assert torch.get_num_threads() == before
    remote = fine_tune_in_worker(champion(), x, y, settings(cpu_threads=2))
    assert remote.threads == 2
    with pytest.raises(ValidationError, match="cpu_threads"):
        settings(cpu_threads=0)


def test_frozen_layers_stay_bit_identical_while_the_head_moves():
    x, y = data()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(N_FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2)
    )
    result = fine_tune(model, x, y, settings(trainable=["3"], weight_decay=0.1))
    for prefix in ("0.", "1."):  # the batch-norm running statistics included
        assert states_equal(model, result.model, prefix), prefix
    assert not states_equal(model, result.model, "3.")
    assert result.trainable_params == 16 * 2 + 2 and result.frozen_params == 16 * 9 + 16 * 2
    assert all(p.requires_grad for p in result.model.parameters())  # flags restored


def test_an_unknown_trainable_prefix_is_a_named_error():
    x, y = data()
    with pytest.raises(ValueError, match=r"correction\.trainable: 'net\.9' matches no parameter"):
        fine_tune(champion(), x, y, settings(trainable=["net.9"]))
    with pytest.raises(ValueError, match="correction.trainable"):
        fine_tune(champion(), x, y, settings(trainable=["0.weigh"]))  # whole names only
    with pytest.raises(ValidationError):
        CorrectionConfig(trainable=[])


def test_l2_sp_keeps_the_weights_near_the_champion():
    x, y = data()
    y = 1 - y  # flipped labels: a lot to unlearn, so the weights want to move far
    free = fine_tune(champion(), x, y, settings(epochs=10, learning_rate=1e-2))
    pulled = fine_tune(champion(), x, y, settings(epochs=10, learning_rate=1e-2, l2_sp=10.0))
    assert distance(pulled.model, champion()) < 0.2 * distance(free.model, champion())


def test_time_budget_stops_after_the_epoch_that_crosses_it():
    x, y = data()
    model = Misbehaving("slow", after=0)  # 4 calls x 50 ms: ~0.2 s an epoch
    result = fine_tune(model, x, y, settings(epochs=100, time_budget_s=0.5))
    assert result.stopped_by == "time_budget"
    assert 1 <= result.epochs_run <= 5 and len(result.val_loss) == result.epochs_run


def test_regression_on_float_targets_trains_with_mse():
    x, _ = data(400)
    y = (x[:, 0] - 2 * x[:, 1] + 0.5).astype(np.float32)
    result = fine_tune(champion(1), x, y, settings(epochs=30, learning_rate=1e-2))
    assert result.val_loss[-1] < 0.25 * result.val_loss[0]
    with torch.no_grad():
        before = float(
            ((champion(1)(torch.from_numpy(x)).squeeze(-1) - torch.from_numpy(y)) ** 2).mean()
        )
        after = float(
            ((result.model(torch.from_numpy(x)).squeeze(-1) - torch.from_numpy(y)) ** 2).mean()
        )
    assert after < 0.25 * before
    with pytest.raises(ValueError, match="single-output"):
        fine_tune(champion(2), x, y, settings())


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("sigkill", r"^worker killed by signal 9 \(SIGKILL\)$"),
        ("exit", r"^worker exited with code 3$"),
        ("raise", r"^ValueError: boom in forward$"),
    ],
)
def test_a_crashing_worker_raises_and_the_parent_survives(how, reason):
    x, y = data()
    seen = []
    with pytest.raises(FineTuneFailed, match=reason) as failure:
        fine_tune_in_worker(Misbehaving(how), x, y, settings(), on_epoch=lambda *a: seen.append(a))
    assert [e for e, _, _ in seen] == [1]  # epoch 1 reported before the crash in epoch 2
    if how == "raise":
        assert "boom in forward" in failure.value.detail  # the child's traceback
    assert fine_tune(champion(), x, y, settings(epochs=1)).epochs_run == 1  # parent still fine


def test_a_worker_past_its_memory_budget_is_reported():
    x, y = data()
    cfg = settings(memory_budget_mb=256)
    seen = []
    with pytest.raises(FineTuneFailed, match=r"out of memory \(budget 256 MB\)"):
        model = Misbehaving("allocate", size_mb=1024)  # 1 GB in epoch 2
        fine_tune_in_worker(model, x, y, cfg, on_epoch=lambda *a: seen.append(a))
    assert len(seen) == 1  # epoch 1 trained within the budget


def test_a_worker_past_its_time_budget_is_killed():
    x, y = data()
    started = time.monotonic()
    with pytest.raises(FineTuneFailed, match="exceeded the time budget"):
        fine_tune_in_worker(Misbehaving("hang"), x, y, settings(time_budget_s=3), grace_s=1)
    assert time.monotonic() - started < 15


def test_worker_false_runs_in_process_and_unsendable_models_fail_cleanly():
    class Local(nn.Module):  # defined here: cannot be pickled for a worker
        def __init__(self):
            super().__init__()
            self.net = champion()

        def forward(self, x):
            return self.net(x)

    x, y = data()
    result = fine_tune_in_worker(Local(), x, y, settings(worker=False, epochs=2))
    assert not result.worker and result.epochs_run == 2
    with pytest.raises(FineTuneFailed, match="cannot be sent to the worker"):
        fine_tune_in_worker(Local(), x, y, settings(epochs=2))
