"""The shared selection kernels: threshold (LTP) and stable top-k (PoWER-BERT, LAT, SpAtten)."""
from __future__ import annotations

import torch

from harness.model.selection import rank_tokens, threshold_keep, topk_keep


def test_threshold_keep_prunes_below_theta_keeps_cls():
    scores = torch.tensor([[0.01, 0.30, 0.10, 0.09, 0.50], [0.02, 0.2, 0.4, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    keep = threshold_keep(scores, mask, 0.1)
    # strict: s < theta is pruned, s == theta kept; [CLS] kept despite its low score
    assert keep.tolist() == [[True, True, True, False, True], [True, True, True, False, False]]
    per_row = threshold_keep(scores, mask, torch.tensor([0.4, 0.3]))
    assert per_row.tolist() == [[True, False, False, False, True], [True, False, True, False, False]]
    assert not threshold_keep(scores, mask, 0.0)[~mask].any()


def test_topk_matches_threshold_on_same_counts():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(4, 20, generator=g)
    mask = torch.ones(4, 20, dtype=torch.bool)
    mask[1, 12:] = False
    keep = threshold_keep(scores, mask, 0.5)
    assert torch.equal(topk_keep(scores, mask, keep.sum(1)), keep)


def test_topk_breaks_ties_by_position_and_never_keeps_padding():
    scores = torch.tensor([[0.0, 0.5, 0.5, 0.5, 0.9], [0.0, 0.2, 0.2, 7.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    # [CLS] ranks first whatever its score; equal scores keep the earlier token
    assert rank_tokens(scores, mask)[0].tolist() == [0, 2, 3, 4, 1]
    assert topk_keep(scores, mask, 3).tolist() == [[True, True, False, False, True], [True, True, True, False, False]]
    # k larger than a row's real length keeps only its real tokens (padding's high scores ignored)
    assert topk_keep(scores, mask, torch.tensor([5, 5])).tolist() == mask.tolist()
