"""Device placement without a GPU: structural surgery creates every index and
module on the weights' device (the `meta` device stands in for a GPU here, so a
CPU-made tensor anywhere fails), and only jobs that build or load a model need
the configured device."""
from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.model.encoder import BertClassifier
from harness.model.structure import prune_ffn, prune_heads, prune_hidden

from .conftest import tiny_shape


@pytest.mark.parametrize("head", ["classify", "span"])
def test_slicing_stays_on_the_weights_device(head):
    with torch.device("meta"):
        model = BertClassifier(tiny_shape(), 3, head=head)
    prune_heads(model.layers[0], [0, 2])  # CoFi's materialize, SpAtten's cascade head pruning
    prune_ffn(model.layers[1], [1, 5, 7])
    prune_hidden(model, list(range(0, 32, 2)))
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.layers[0].query.weight.shape == (16, 16) and model.layers[1].ffn_in.weight.shape == (3, 16)
    assert model.embeddings.word_embeddings.weight.shape == (200, 16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_a_cuda_config_fails_only_where_a_model_is_needed(tmp_path):
    from harness.config import load_config
    from harness.run.context import RunContext

    cfg = load_config("smoke", [f"results_dir={tmp_path}/r", f"work_dir={tmp_path}/w", "data_dir=", "device=cuda"])
    ctx = RunContext(cfg, "mr", "dense")  # the lengths and gather jobs stop here: no GPU needed
    assert len(ctx.encoded("validation")) > 0
    with pytest.raises(HarnessError, match="no GPU is visible"):
        ctx.new_model()
    ctx.model_dir().mkdir(parents=True)
    (ctx.model_dir() / "model.safetensors").write_bytes(b"")
    with pytest.raises(HarnessError, match="no GPU is visible"):
        ctx.load_model()

