"""Mixed-precision training (`train.autocast`, harness/train/finetune.py): under `bf16` every training
forward and loss runs in bfloat16 autocast (parameters and optimizer in fp32), the validation passes in
fp32; where the device has no bf16 units it trains in fp32 and the log says why; the same seed gives
the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data.encoding import Encoded
from harness.data.tasks import get_task
from harness.model.encoder import BertClassifier, init_weights
from harness.model.precision import unavailable
from harness.train.finetune import TrainConfig, autocast_for, finetune

from .conftest import tiny_shape

TASK = get_task("mr")
HAS_BF16 = unavailable("bf16", "cpu") is None


def _data(n: int, seed: int) -> Encoded:
    rng = np.random.default_rng(seed)
    ids = [[101, *rng.integers(5, 200, int(rng.integers(4, 12))).tolist(), 102] for _ in range(n)]
    return Encoded(ids, [[0] * len(x) for x in ids], rng.integers(0, 2, n).astype(np.int64))


def _train(autocast: str) -> tuple[BertClassifier, dict, list]:
    torch.manual_seed(0)
    model = BertClassifier(tiny_shape(), num_labels=2)
    init_weights(model)
    seen = []  # the dtype each classifier call produced: training steps and validation passes

    def hook(_m, _args, out):
        seen.append((model.training, out.dtype))
    model.classifier.register_forward_hook(hook)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=4, checkpoint_minutes=0, autocast=autocast)
    log = finetune(model, TASK, _data(12, 1), _data(6, 2), cfg)
    return model, log, seen


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 matrix units: autocast trains in fp32 here")
def test_bf16_autocast_trains_in_bf16_and_validates_in_fp32():
    model, log, seen = _train("bf16")
    assert log["autocast"] == "bf16"
    assert {d for training, d in seen if training} == {torch.bfloat16}
    assert {d for training, d in seen if not training} == {torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay fp32
    again, _, _ = _train("bf16")  # deterministic
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_no_autocast_is_fp32_throughout():
    _, log, seen = _train("none")
    assert log["autocast"] == "none"
    assert {d for _, d in seen} == {torch.float32}


def test_autocast_without_bf16_units_falls_back_and_says_why(monkeypatch):
    import harness.train.finetune as ft

    monkeypatch.setattr(ft, "unavailable", lambda precision, device: "no bf16 units (test)")
    cfg = TrainConfig(autocast="bf16")
    _, ran = autocast_for(cfg, "cpu")
    assert ran == "none (no bf16 units (test))"
    with pytest.raises(ValueError, match="unknown train.autocast"):
        autocast_for(TrainConfig(autocast="fp8"), "cpu")


def test_a_diverged_loss_stops_training_with_the_fix():
    from harness.errors import HarnessError

    torch.manual_seed(0)
    model = BertClassifier(tiny_shape(), num_labels=2)
    init_weights(model)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=4, checkpoint_minutes=0)
    with pytest.raises(HarnessError, match="training loss is nan at step 1") as e:
        finetune(model, TASK, _data(12, 1), _data(6, 2), cfg, loss_fn=lambda m, out, b: out.logits.sum() * float("nan"))
    assert "train.autocast: none" in str(e.value)
