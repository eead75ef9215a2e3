"""Deterministic evaluation of a model under a padding protocol.

Returns predictions in dataset order and the per-example trace, from which
metrics and FLOPs are computed. No sampling: the model runs in eval mode.
For span tasks the examples are windows (`harness.data.windows`): the trace
has one row per window and the predictions one answer text per question
(`harness.train.spans`); `EvalRun.question` maps trace rows to questions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.data.encoding import Encoded
from harness.measure.metrics import compute_metrics
from harness.data.padding import make_batches
from harness.data.tasks import TaskSpec
from harness.model.trace import Trace


@dataclass
class EvalRun:
    protocol: str
    predictions: np.ndarray
    metrics: dict[str, float]
    trace: Trace
    question: np.ndarray | None = None  # span tasks: [W] the question of each trace row (window)


@torch.inference_mode()
def predict(model, enc: Encoded, protocol: str, seq_len: int, batch_size: int, device="cpu"):
    """Logits [N, C] and trace, both in dataset order."""
    was_training = model.training
    model.eval()
    logits, traces, index = [], [], []
    for batch in make_batches(enc, protocol, seq_len, batch_size):
        b = batch.to(device)
        out = model(b.input_ids, b.attention_mask, b.token_type_ids)
        logits.append(out.logits.float().cpu().numpy())
        traces.append(out.trace)
        index.append(batch.index)
    model.train(was_training)
    order = np.argsort(np.concatenate(index), kind="stable")
    return np.concatenate(logits)[order], Trace.concat(traces).take(order)


@torch.inference_mode()
def predict_spans(model, enc, protocol: str, seq_len: int, batch_size: int, device="cpu"):
    """Per window, in dataset order: start and end logits (the window's own
    length) and the trace."""
    was_training = model.training
    model.eval()
    starts, ends, traces, index = [], [], [], []
    for batch in make_batches(enc, protocol, seq_len, batch_size):
        b = batch.to(device)
        out = model(b.input_ids, b.attention_mask, b.token_type_ids)
        logits = out.logits.float().cpu().numpy()
        for row, i in enumerate(batch.index):
            n = len(enc.input_ids[i])
            starts.append(logits[row, :n, 0])
            ends.append(logits[row, :n, 1])
        traces.append(out.trace)
        index.append(batch.index)
    model.train(was_training)
    order = np.argsort(np.concatenate(index), kind="stable")
    return [starts[i] for i in order], [ends[i] for i in order], Trace.concat(traces).take(order)


def to_predictions(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    return logits[:, 0] if task.is_regression else logits.argmax(-1)


def evaluate(model, task: TaskSpec, enc: Encoded, protocol: str, batch_size: int, device="cpu") -> EvalRun:
    if task.is_span:
        from harness.train.spans import best_answers

        starts, ends, trace = predict_spans(model, enc, protocol, task.seq_len, batch_size, device)
        texts = np.array([a.text for a in best_answers(enc, starts, ends, task.version)], dtype=object)
        gold = [ex.answers for ex in enc.examples]
        return EvalRun(protocol, texts, compute_metrics(task, texts, gold), trace, enc.question)
    logits, trace = predict(model, enc, protocol, task.seq_len, batch_size, device)
    preds = to_predictions(task, logits)
    return EvalRun(protocol, preds, compute_metrics(task, preds, enc.labels), trace)
