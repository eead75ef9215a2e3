"""LAT plugin: genes and rounding, top-k on real query rows, padding independence,
LengthDrop sampling, the sandwich loss, the evolutionary search, end to end."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from harness.measure.flops import trace_macs
from harness.model.policy import EncoderState
from harness.model.trace import TraceRecorder
from harness.pareto import pareto_front
from harness.plugin.search import spread_points
from harness.train.finetune import TrainBatch
from methods.lat import (
    LATPolicy,
    Settings,
    check_gene,
    constant_drop_gene,
    crossover_genes,
    gene_counts,
    gene_macs,
    mutate_gene,
    sample_gene,
    sandwich_loss_fn,
    search_genes,
)

from .conftest import random_batch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread (2 threads on a loaded 2-core box spin ~100x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _state(probs, mask, gene, resolution=10, d=4):
    b, n = mask.shape
    st = EncoderState(
        hidden=torch.arange(b * n * d, dtype=torch.float).view(b, n, d),
        mask=mask.bool(),
        positions=torch.arange(n).unsqueeze(0).expand(b, n),
        rows=torch.arange(b),
        recorder=TraceRecorder(b, len(gene)),
        num_layers=len(gene),
        attn_probs=probs,
    )
    pol = LATPolicy(gene, resolution)
    pol.before_layer(0, st)
    return pol, st


def test_counts_round_up_with_floor_of_two():
    # ratios 0.5, 0.3, 0.1 of lengths 10, 7, 3, 1
    k = gene_counts((5, 3, 1), 10, [10, 7, 3, 1])
    assert k.tolist() == [[5, 3, 2], [4, 3, 2], [2, 2, 2], [1, 1, 1]]
    # exact integer arithmetic: 0.3 * 10 is 3, not 4
    assert gene_counts((3,), 10, [10]).tolist() == [[3]]
    assert (np.diff(gene_counts((9, 7, 7, 2), 10, np.arange(1, 60)), axis=1) <= 0).all()


def test_check_gene_rejects_increasing_or_out_of_range():
    check_gene((10, 8, 8), 10)
    for bad in [(8, 9), (11,), (0,), ()]:
        with pytest.raises(ValueError):
            check_gene(bad, 10)


def test_topk_uses_real_query_rows_and_keeps_cls():
    n, length = 8, 6
    mask = (torch.arange(n) < length).unsqueeze(0)
    probs = torch.zeros(1, 2, n, n)
    base = torch.tensor([0.01, 0.3, 0.02, 0.25, 0.2, 0.22])
    probs[0, :, :length, :length] = base / base.sum()
    # padded query rows put everything on token 2: must not matter
    probs[0, :, length:, 2] = 100.0
    pol, st = _state(probs, mask, (5,))  # keep ceil(0.5 * 6) = 3
    pol.after_attention(0, st)
    assert st.positions[0].tolist() == [0, 1, 3]
    assert st.mask.sum().item() == 3


def test_padding_does_not_change_selection_or_output(tiny_model):
    tiny_model.policy = LATPolicy((8, 6, 3), resolution=10)
    ids, mask = random_batch(3, 30, lengths=[30, 13, 21], seed=5)
    with torch.no_grad():
        batch = tiny_model(ids, mask)
        for i, n in enumerate([30, 13, 21]):
            alone = tiny_model(ids[i : i + 1, :n], mask[i : i + 1, :n])
            assert torch.allclose(alone.logits, batch.logits[i : i + 1], atol=1e-5)
            assert alone.trace.n_ffn[0].tolist() == batch.trace.n_ffn[i].tolist()
    # per-layer kept counts are the analytic ones, and non-increasing
    expected = gene_counts((8, 6, 3), 10, [30, 13, 21])
    assert batch.trace.n_ffn.tolist() == expected.tolist()
    assert batch.trace.n_attn[:, 1:].tolist() == expected[:, :-1].tolist()


def test_gene_macs_equal_trace_macs(tiny_model):
    lengths = [40, 9, 31, 2, 17]
    ids, mask = random_batch(len(lengths), 40, lengths=lengths, seed=1)
    arch = tiny_model.arch()
    for gene in [None, (10, 10, 10), (9, 5, 2), (4, 4, 1)]:
        tiny_model.policy = LATPolicy(gene, resolution=10)
        with torch.no_grad():
            out = tiny_model(ids, mask)
        assert np.allclose(trace_macs(out.trace, "none"), gene_macs(gene, 10, lengths, arch))


def test_full_gene_is_dense(tiny_model):
    ids, mask = random_batch(2, 20, lengths=[20, 11])
    with torch.no_grad():
        dense = tiny_model(ids, mask).logits
        tiny_model.policy = LATPolicy((10, 10, 10), resolution=10)
        assert not any(tiny_model.policy.needs_attention_probs(i) for i in range(3))
        assert torch.allclose(tiny_model(ids, mask).logits, dense, atol=1e-5)


def test_drop_and_restore_returns_every_position(tiny_model):
    tiny_model.policy = LATPolicy((7, 4, 2), resolution=10)
    ids, mask = random_batch(2, 20, lengths=[20, 12])
    with torch.no_grad():
        out = tiny_model(ids, mask, restore=True)
        plain = tiny_model(ids, mask)
    assert out.hidden.shape[:2] == (2, 20)
    real = mask.bool()
    assert (out.hidden[real].abs().sum(-1) > 0).all() and (out.hidden[~real] == 0).all()
    assert torch.allclose(out.logits, plain.logits)
    # kept tokens carry their last-layer states
    st = plain.state
    for r in range(2):
        pos = st.positions[r][st.mask[r]]
        assert torch.allclose(out.hidden[r, pos], plain.hidden[r][st.mask[r]])


def test_length_drop_sampling_bounds():
    rng = np.random.default_rng(0)
    assert constant_drop_gene(4, 64, 0.2) == (52, 42, 34, 28)
    seen = set()
    for _ in range(300):
        g = sample_gene(4, 64, 0.2, rng)
        prev = 64
        for x in g:
            assert math.ceil(0.8 * prev) <= x <= prev
            prev = x
        seen.add(g[0])
    assert seen == set(range(52, 65))  # the whole range U[ceil(0.8 * 64), 64] is drawn


def test_sandwich_loss_runs_submodels_and_restores_gene(tiny_model):
    from harness.data.tasks import get_task

    task = get_task("mnli")  # 3 labels, like the tiny model
    tiny_model.policy = LATPolicy(None, resolution=10)
    tiny_model.train()
    calls = []
    orig = tiny_model.policy.after_attention

    def spy(layer, state):
        calls.append(tiny_model.policy.gene)
        return orig(layer, state)

    tiny_model.policy.after_attention = spy
    loss_fn = sandwich_loss_fn(task, 3, 10, 0.2, 2, np.random.default_rng(0))
    ids, mask = random_batch(4, 25, lengths=[25, 20, 9, 14])
    batch = TrainBatch(ids, mask, torch.zeros_like(ids), torch.tensor([0, 1, 2, 1]))
    out = tiny_model(*batch.inputs)
    loss = loss_fn(tiny_model, out, batch)
    loss.backward()
    genes = list(dict.fromkeys(calls))
    assert genes[0] is None and genes[1] == constant_drop_gene(3, 10, 0.2) and len(genes) >= 3
    assert tiny_model.policy.gene is None
    assert tiny_model.layers[0].query.weight.grad is not None


def _front(store: dict) -> list:
    cands = list(store)
    return [cands[i] for i in pareto_front([store[c]["cost"] for c in cands], [store[c]["score"] for c in cands], cands)]


def test_pareto_front_and_operators():
    pts = {
        (1,): {"cost": 1.0, "score": 0.5},
        (2,): {"cost": 2.0, "score": 0.4},  # dominated
        (3,): {"cost": 3.0, "score": 0.7},
        (4,): {"cost": 3.0, "score": 0.6},  # same cost, worse
        (5,): {"cost": 5.0, "score": 0.7},  # costlier, no better
    }
    assert _front(pts) == [(1,), (3,)]
    rng = random.Random(1)
    for _ in range(200):
        check_gene(mutate_gene((9, 7, 4, 2), rng, 10, 0.5), 10)
    assert crossover_genes((10, 8, 5), (9, 5, 2)) == (10, 7, 4)


def test_search_stays_in_bounds_and_improves_front():
    layers, res = 4, 20

    def macs(g):
        return float(sum(g))

    def score(g):  # a made-up accuracy: keeping late tokens matters more
        return sum((i + 1) * x for i, x in enumerate(g)) / 1000

    s = Settings(population_size=6, mutation_size=5, crossover_size=5, evo_iterations=3)
    search, front = search_genes(score, macs, layers, res, s, 0)
    lo, hi = macs(constant_drop_gene(layers, res, 0.2)), macs((res,) * layers)
    assert all(lo <= v["cost"] <= hi for v in search.store.values())
    assert sum(v["how"] == "initial" for v in search.store.values()) >= 4
    assert any(v["how"] in ("mutation", "crossover") for v in search.store.values())
    assert search.rejected  # bred genes cheaper than the smallest one are refused
    # score grows with every kept token, so the full gene is the best and ends the front
    def covers(a, b):  # a is at least as cheap and as good as b
        return a["cost"] <= b["cost"] and a["score"] >= b["score"]

    def dominates(a, b):
        return covers(a, b) and (a["cost"], a["score"]) != (b["cost"], b["score"])

    # the front: no evaluated gene dominates a front gene; every other gene is dominated by or ties one
    for f in front:
        assert not any(dominates(v, search.store[f]) for v in search.store.values())
    for g, v in search.store.items():
        if g not in front:
            assert any(covers(search.store[f], v) for f in front)
    assert front[-1] == (res,) * layers
    assert all(search.store[a]["score"] < search.store[b]["score"] for a, b in zip(front, front[1:]))
    chosen = spread_points(search.store, front, hi, 4)
    assert len(chosen) == 4 and len(set(chosen)) == 4


def test_spread_points_tops_up_a_short_front():
    store = {(i,): {"cost": float(i), "score": 0.5} for i in range(1, 11)}
    front = _front(store)  # only the cheapest: all scores tie
    assert front == [(1,)]
    chosen = spread_points(store, front, 10.0, 4)
    assert (1,) in chosen and (10,) in chosen and len(chosen) == 4


def test_train_and_operating_points_end_to_end(smoke_context):
    from harness.plugin.registry import get_method

    ctx = smoke_context(
        "lat",
        [
            "train.max_train_examples=16",
            "train.max_validation_examples=8",
            "methods_config.lat={population_size: 3, evo_iterations: 1, mutation_size: 2, crossover_size: 2, "
            "n_points: 4, train_max_length: 30}",
        ],
    )
    log = get_method("lat").train(ctx)
    json.dumps(log)
    lengths = ctx.encoded("train").lengths
    assert log["train_max_length"] == 30
    assert log["n_train_used"] == int((lengths <= 30).sum()) < len(lengths)
    assert log["search"]["front"] and log["search"]["n_evaluated"] >= 4
    points = list(get_method("lat").operating_points(ctx))
    assert len(points) >= 4 and len({p.name for p in points}) == len(points)
    ids, mask = random_batch(1, 40, vocab=1000)
    macs = []
    for p in points:
        assert not p.model.training and p.model.policy.gene == tuple(p.knobs["gene"])
        assert p.notes["searched_front"]
        with torch.no_grad():
            macs.append(trace_macs(p.model(ids, mask).trace, "none")[0])
    assert macs == sorted(macs) and macs[0] < macs[-1]
    # same weights in every point
    w = [p.model.layers[0].query.weight for p in points]
    assert all(torch.equal(w[0], x) for x in w[1:])
