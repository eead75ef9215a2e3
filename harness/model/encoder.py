"""The harness's own BERT encoder, with the hooks efficient-inference methods need.

Why not `transformers.BertModel`: methods must drop tokens between sublayers,
read attention probabilities, exit per sample and slice heads/dims physically,
and every forward must leave a per-sample trace for the FLOPs counter. Here
each of those is a plain line of code. Weights load from any Hugging Face BERT
checkpoint (`load_hf_bert_weights`) and outputs match `BertModel` to 1e-5.

Attention uses `scaled_dot_product_attention` unless a policy asks for the
probabilities at a layer; then that layer runs eager attention.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from harness.model.policy import EncoderState, Exit, Policy, drop_rows, leaving_rows
from harness.model.trace import ArchShape, NullRecorder, Trace, TraceRecorder


MODEL_TYPES = ("bert", "roberta")


@dataclass
class BertShape:
    """Architecture hyper-parameters (Hugging Face `BertConfig` names).

    `model_type` is the Hugging Face config's: RoBERTa is BERT's architecture
    but for its embeddings (positions counted from `pad_token_id + 1` over
    non-pad tokens, see `Embeddings.position_ids`); its other differences
    (one token type, LayerNorm eps 1e-5, pad id 1) are plain values of the
    fields below, read from its config like BERT's."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 0
    hidden_act: str = "gelu"
    model_type: str = "bert"

    def __post_init__(self):
        # fail at construction: another model type (DistilBERT, ALBERT, ...)
        # would load into this encoder and silently compute something else
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {self.model_type!r} is not supported (one of {MODEL_TYPES})")

    @classmethod
    def from_dict(cls, d: dict) -> "BertShape":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Embeddings(nn.Module):
    def __init__(self, s: BertShape):
        super().__init__()
        self.word_embeddings = nn.Embedding(s.vocab_size, s.hidden_size, padding_idx=s.pad_token_id)
        self.position_embeddings = nn.Embedding(s.max_position_embeddings, s.hidden_size)
        self.token_type_embeddings = nn.Embedding(s.type_vocab_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)
        self.model_type = s.model_type
        self.pad_token_id = s.pad_token_id

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """BERT: 0..n-1 on every row. RoBERTa (fairseq's `make_positions`, HF's
        `create_position_ids_from_input_ids`): non-pad tokens count from
        pad_token_id + 1 (= 2) and pad tokens sit at pad_token_id, so a row's
        positions do not depend on padding before it. Right-padded rows (the
        harness's) get 2..L+1 on their L real tokens either way; pads written
        with another id than the pad token only move the pads' own positions,
        which no real token attends to."""
        if getattr(self, "model_type", "bert") == "roberta":  # models pickled before RoBERTa lack the field
            real = input_ids.ne(self.pad_token_id).long()
            return torch.cumsum(real, dim=1) * real + self.pad_token_id
        return torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                hidden_gate: torch.Tensor | None = None) -> torch.Tensor:
        pos = self.position_ids(input_ids)
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)
        x = x + self.token_type_embeddings(token_type_ids)
        if hidden_gate is None:
            return self.dropout(self.LayerNorm(x))
        return self.dropout(gated_norm(self.LayerNorm, x, hidden_gate) * hidden_gate)


def gated_norm(norm: nn.LayerNorm, y: torch.Tensor, hidden_gate: torch.Tensor | None) -> torch.Tensor:
    """LayerNorm over the hidden dims whose gate is non-zero (the others are
    zero), exactly what the model computes once those dims are sliced away."""
    if hidden_gate is None:
        return norm(y)
    idx = (hidden_gate != 0).nonzero(as_tuple=True)[0]
    if idx.numel() == y.shape[-1]:
        return norm(y)
    sub = F.layer_norm(y.index_select(-1, idx), (idx.numel(),), norm.weight[idx], norm.bias[idx], norm.eps)
    return torch.zeros_like(y).index_copy(y.dim() - 1, idx, sub)


def _all_zero(gate: torch.Tensor | None) -> bool:
    return gate is not None and not bool((gate != 0).any())


class Layer(nn.Module):
    """One transformer layer: attention sublayer, then FFN sublayer (post-LN)."""

    def __init__(self, s: BertShape):
        super().__init__()
        d, h = s.hidden_size, s.num_attention_heads
        self.num_heads = h
        self.head_dim = d // h
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.attn_out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d, eps=s.layer_norm_eps)
        self.ffn_in = nn.Linear(d, s.intermediate_size)
        self.ffn_out = nn.Linear(s.intermediate_size, d)
        self.ffn_norm = nn.LayerNorm(d, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)
        self.attn_dropout_p = s.attention_probs_dropout_prob
        # structural gates (None = off), set by a policy's `on_forward` (CoFi's L0
        # masks): they multiply heads, FFN dims, whole sublayers and hidden dims;
        # LayerNorms then normalise over the non-zero hidden dims and a sublayer
        # whose gates are all zero is skipped with its LayerNorm, so a gated model
        # computes what its sliced (`harness.model.structure`) form computes
        self.head_gate: torch.Tensor | None = None  # [heads]
        self.ffn_gate: torch.Tensor | None = None  # [intermediate]
        self.attn_layer_gate: torch.Tensor | None = None  # scalar, whole attention sublayer
        self.ffn_layer_gate: torch.Tensor | None = None  # scalar, whole FFN sublayer
        self.hidden_gate: torch.Tensor | None = None  # [hidden], shared across the model

    @property
    def ffn_dim(self) -> int:
        return self.ffn_in.out_features

    def attention(
        self, x: torch.Tensor, mask: torch.Tensor, need_probs: bool, key_weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`key_weight` [b, n] (training only, soft token masks such as
        Transkimmer's): the attention to each key is scaled by it and
        renormalised, so a weight of 0 is exactly the key's removal."""
        if self.num_heads == 0 or _all_zero(self.attn_layer_gate) or _all_zero(self.head_gate):
            return x, None
        b, n, _ = x.shape
        h, dh = self.num_heads, self.head_dim
        q = self.query(x).view(b, n, h, dh).transpose(1, 2)
        k = self.key(x).view(b, n, h, dh).transpose(1, 2)
        v = self.value(x).view(b, n, h, dh).transpose(1, 2)
        drop = self.attn_dropout_p if self.training else 0.0
        probs = None
        if need_probs or key_weight is not None:
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)
            scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
            probs = scores.softmax(-1)
            if key_weight is not None:
                weighted = probs * key_weight[:, None, None, :].to(probs.dtype)
                probs = weighted / weighted.sum(-1, keepdim=True).clamp(min=torch.finfo(probs.dtype).tiny)
            mixed = torch.matmul(F.dropout(probs, drop, self.training), v)
        else:
            mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :], dropout_p=drop)
        if self.head_gate is not None:
            mixed = mixed * self.head_gate.view(1, h, 1, 1)
        mixed = mixed.transpose(1, 2).reshape(b, n, h * dh)
        out = self.dropout(self.attn_out(mixed))
        if self.attn_layer_gate is not None:
            out = out * self.attn_layer_gate
        if self.hidden_gate is not None:
            out = out * self.hidden_gate
        return gated_norm(self.attn_norm, out + x, self.hidden_gate), probs

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        if self.ffn_dim == 0 or _all_zero(self.ffn_layer_gate) or _all_zero(self.ffn_gate):
            return x
        inter = F.gelu(self.ffn_in(x))
        if self.ffn_gate is not None:
            inter = inter * self.ffn_gate
        out = self.dropout(self.ffn_out(inter))
        if self.ffn_layer_gate is not None:
            out = out * self.ffn_layer_gate
        if self.hidden_gate is not None:
            out = out * self.hidden_gate
        return gated_norm(self.ffn_norm, out + x, self.hidden_gate)


@dataclass
class EncoderOutput:
    logits: torch.Tensor  # [B, C], every row (early-exit rows from their exit head)
    trace: Trace | None  # None when run with trace=False
    hidden: torch.Tensor | None  # [B, n, d] last hidden states (rows that reached the end)
    state: EncoderState


class BertClassifier(nn.Module):
    """BERT encoder + task head, run under an optional `Policy`.

    `head="classify"`: pooler + classifier on [CLS] ([B, C] logits).
    `head="span"` (extractive QA): a start/end classifier on every token
    ([B, n, 2] logits, BERT's SQuAD head, no pooler). Token pruners then need
    a state at every position: with `restore_dropped` (the default) each
    dropped token's last state is written back (LAT's Drop-and-Restore) and
    the head reads every real token; without it, positions whose token was
    dropped get no logit (`SPAN_MASKED`) and cannot be an answer."""

    def __init__(self, shape: BertShape, num_labels: int, policy: Policy | None = None, head: str = "classify"):
        super().__init__()
        if head not in ("classify", "span"):
            raise ValueError(f"unknown head {head!r}")
        self.shape = shape
        self.num_labels = num_labels
        self.head_kind = head
        self.restore_dropped = True
        self.embeddings = Embeddings(shape)
        self.layers = nn.ModuleList(Layer(shape) for _ in range(shape.num_hidden_layers))
        self.pooler = nn.Linear(shape.hidden_size, shape.hidden_size) if head == "classify" else None
        self.dropout = nn.Dropout(shape.hidden_dropout_prob)
        self.classifier = nn.Linear(shape.hidden_size, num_labels)
        self.policy = policy if policy is not None else Policy()
        self.embedding_hidden_gate: torch.Tensor | None = None
        # "eager" runs every layer's attention as explicit softmax(QK^T)V, the kernel a
        # pruner that reads attention probabilities runs: a dense baseline with the
        # pruners' kernel (timing.dense_kernels); "auto" = fused SDPA unless probs are needed
        self.attention_kernel = "auto"

    @property
    def is_span(self) -> bool:
        return getattr(self, "head_kind", "classify") == "span"

    # ---- structure --------------------------------------------------------
    def attention_kernels(self) -> list[str]:
        """The attention kernel each layer runs at inference under the current
        policy: "sdpa" (torch's fused scaled_dot_product_attention), "eager"
        (explicit probabilities, what attention-score pruners need) or "none"
        (no heads left). Read from the policy, not traced, so the timed forward
        pays nothing for it; the evaluate job stores it with the timings."""
        return ["none" if layer.num_heads == 0 else "eager" if self._eager_at(i) else "sdpa"
                for i, layer in enumerate(self.layers)]

    def _eager_at(self, layer: int) -> bool:
        """Whether layer `layer` runs explicit-softmax attention: the one rule
        `encode` follows and `attention_kernels` reports."""
        # models saved before the field run "auto"
        return getattr(self, "attention_kernel", "auto") == "eager" or self.policy.needs_attention_probs(layer)

    def arch(self) -> ArchShape:
        first = self.layers[0]
        return ArchShape(
            hidden=self.embeddings.LayerNorm.normalized_shape[0],
            head_dim=first.head_dim,
            heads=tuple(layer.num_heads for layer in self.layers),
            ffn=tuple(layer.ffn_dim for layer in self.layers),
            num_labels=self.num_labels,
            pooler=(self.pooler.in_features, self.pooler.out_features) if self.pooler is not None else (0, 0),
            classifier_in=self.classifier.in_features,
            head="span" if self.is_span else "classify",
        )

    # ---- forward ----------------------------------------------------------
    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        restore: bool = False,
        trace: bool = True,
    ) -> EncoderState:
        """Run the layers under the policy; rows may leave early. With
        `trace=False` nothing is recorded (the timed forward)."""
        b, n = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        policy = self.policy
        policy.on_forward(self)
        x = self.embeddings(input_ids, token_type_ids, self.embedding_hidden_gate)
        device = input_ids.device
        state = EncoderState(
            hidden=x,
            mask=attention_mask.bool(),
            positions=torch.arange(n, device=device).unsqueeze(0).expand(b, n),
            rows=torch.arange(b, device=device),
            recorder=(TraceRecorder if trace else NullRecorder)(b, len(self.layers), device),
            num_layers=len(self.layers),
            restore=restore,
        )
        for i, layer in enumerate(self.layers):
            if state.hidden.shape[0] == 0:
                break
            state.layer = i
            policy.before_layer(i, state)
            state.recorder.attention(i, state.rows, state.mask)
            state.layer_input = state.hidden if state.restore else None
            state.hidden, state.attn_probs = layer.attention(
                state.hidden, state.mask, self._eager_at(i), state.key_weight
            )
            policy.after_attention(i, state)
            state.layer_input = None
            state.recorder.ffn(i, state.rows, state.mask)
            state.hidden = layer.ffn(state.hidden)
            state.attn_probs = None
            leaving = policy.after_layer(i, state)
            if leaving is not None:
                self._exit_rows(state, leaving, i + 1, b)
        return state

    def _exit_rows(self, state: EncoderState, leaving: Exit, layers_run: int, batch: int) -> None:
        """Store the logits of the rows that leave and remove them (one host sync)."""
        plan = leaving_rows(state, leaving.mask)
        if plan is None:
            return
        gone, stay, width = plan
        gone_index = torch.tensor(gone, dtype=torch.long, device=state.rows.device)
        rows = state.rows.index_select(0, gone_index)
        if state.exit_logits is None:
            state.exit_logits = leaving.logits.new_zeros(batch, leaving.logits.shape[-1])
        state.exit_logits = state.exit_logits.index_copy(0, rows, leaving.logits.index_select(0, gone_index))
        state.recorder.exited(rows, layers_run)
        drop_rows(state, stay, width)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        pooled = torch.tanh(self.pooler(hidden[:, 0]))
        return self.classifier(self.dropout(pooled))

    def span_head(self, state: EncoderState, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Start/end logits [B, length, 2] at every original position, and the
        positions [B, length] that have a state (the rest get `SPAN_MASKED`)."""
        if state.exit_logits is not None:
            raise ValueError("a span head cannot serve rows that exited early")
        if state.moved or state.hidden.shape[1] != length:
            hidden, valid = restore_tokens(state, length, with_valid=True)
        else:
            hidden, valid = state.hidden, state.mask
        logits = self.classifier(hidden)  # no dropout on the QA head, as in BERT's SQuAD code
        return logits.masked_fill(~valid.unsqueeze(-1), SPAN_MASKED), valid

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        restore: bool = False,
        trace: bool = True,
    ) -> EncoderOutput:
        b, n = input_ids.shape
        if self.is_span:
            state = self.encode(input_ids, attention_mask, token_type_ids, restore=restore or self.restore_dropped,
                                trace=trace)
            logits, valid = self.span_head(state, n)
            state.recorder.ran_head(state.rows, valid.sum(1), n)
            return EncoderOutput(logits=logits, trace=state.recorder.to_trace(self.arch()) if trace else None,
                                 hidden=None, state=state)
        state = self.encode(input_ids, attention_mask, token_type_ids, restore=restore, trace=trace)
        logits = state.exit_logits
        if state.hidden.shape[0]:
            final = self.head(state.hidden)
            state.recorder.ran_head(state.rows)
            base = logits if logits is not None else final.new_zeros(b, final.shape[-1])
            logits = base.index_copy(0, state.rows, final)
        hidden = restore_tokens(state, n) if restore else state.hidden
        return EncoderOutput(logits=logits, trace=state.recorder.to_trace(self.arch()) if trace else None, hidden=hidden,
                             state=state)


# the logit of a position without a state (padding, or a token dropped without restore): never an answer
SPAN_MASKED = -1e4


def restore_tokens(state: EncoderState, length: int, with_valid: bool = False):
    """Drop-and-Restore: final hidden states at every original position.

    Rows that exited early are not restored (they have no final states).
    Kept tokens take their last-layer states, dropped tokens the state they
    had when dropped (when `state.restore` stored them: the output of the last
    layer that computed them whole, see `select_tokens`). With `with_valid`,
    also the [B, length] positions that got a state.

    No host sync: every stored [b, n] block is scattered whole, its entries
    that do not belong (kept or padding tokens of a drop, padding of the final
    states) sent to a spare column `length` that is cut off at the end.
    """
    d = state.hidden.shape[-1]
    batch = int(state.recorder.batch)
    out = state.hidden.new_zeros(batch, length + 1, d)
    valid = torch.zeros(batch, length + 1, dtype=torch.bool, device=state.hidden.device)
    blocks = [(s.rows, s.positions, s.states, s.gone) for s in state.dropped]
    blocks.append((state.rows, state.positions, state.hidden, state.mask))
    for rows, pos, hid, real in blocks:
        r = rows.unsqueeze(1).expand_as(pos)
        c = torch.where(real, pos, torch.full_like(pos, length))
        out = out.index_put((r, c), hid)
        valid = valid.index_put((r, c), real)
    out, valid = out[:, :length], valid[:, :length]
    return (out, valid) if with_valid else out


# ---- weights ---------------------------------------------------------------
_LAYER_MAP = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}


def hf_to_harness_key(key: str) -> str | None:
    """Map a Hugging Face BertModel / RobertaModel parameter name to ours
    (None = unused). RoBERTa's names are BERT's under a `roberta.` prefix;
    task heads (`classifier.*`, RoBERTa's `lm_head.*`) are not backbone
    weights and map to None."""
    for prefix in ("bert.", "roberta.", "model."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    if key.startswith("embeddings."):
        # position_ids / token_type_ids are index buffers, not weights
        return None if key.endswith(("position_ids", "token_type_ids")) else key
    if key.startswith("pooler.dense."):
        return "pooler." + key.split(".")[-1]
    if key.startswith("encoder.layer."):
        parts = key.split(".")
        idx, rest, leaf = parts[2], ".".join(parts[3:-1]), parts[-1]
        if rest in _LAYER_MAP:
            return f"layers.{idx}.{_LAYER_MAP[rest]}.{leaf}"
    return None


def load_hf_bert_weights(model: BertClassifier, hf_state: dict[str, torch.Tensor]) -> list[str]:
    """Copy a Hugging Face BERT or RoBERTa state dict into `model`; returns
    missing keys.

    RoBERTa's pooler is optional: its checkpoints carry no trained pooler
    (RoBERTa dropped next-sentence prediction, and `RobertaForSequenceClassification`
    puts a new dense+tanh+out_proj head on <s>). Our pooler+classifier is that
    head, left at the caller's (seeded) initialisation when the state dict has
    no pooler; the one difference from Hugging Face's head is that it has no
    dropout before the dense layer (training only; eval outputs are the same).
    """
    mapped = {}
    for k, v in hf_state.items():
        ours = hf_to_harness_key(k)
        if ours is not None:
            if ours.endswith(".gamma"):
                ours = ours[: -len("gamma")] + "weight"
            if ours.endswith(".beta"):
                ours = ours[: -len("beta")] + "bias"
            mapped[ours] = v
    result = model.load_state_dict(mapped, strict=False)
    optional = ("classifier.", "policy.")
    if getattr(model.embeddings, "model_type", "bert") == "roberta":
        optional += ("pooler.",)
    return [k for k in result.missing_keys if not k.startswith(optional)]


def init_weights(model: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation (normal(0, 0.02), zero bias, unit LayerNorm)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
