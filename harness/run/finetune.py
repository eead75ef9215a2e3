"""Fine-tuning loop shared by every method.

AdamW with a linear warm-up/decay schedule, seeded shuffling, a tqdm progress
bar, validation on the held-out `validation` split after each epoch (and every
`eval_every` steps if set), keeping the best checkpoint by the task's primary
metric. Methods add stages by calling `finetune` with their own loss and
parameter groups.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness.data.encoding import Encoded
from harness.run.inference import evaluate
from harness.measure.metrics import primary
from harness.data.padding import collate
from harness.data.tasks import TaskSpec


@dataclass
class TrainConfig:
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 32
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    eval_every: int = 0  # steps; 0 = once per epoch
    grad_clip: float = 1.0
    seed: int = 0
    eval_batch_size: int = 64


def task_loss(task: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task.is_regression:
        return F.mse_loss(logits[:, 0], labels.float())
    return F.cross_entropy(logits, labels.long())


LossFn = Callable[[object, object, torch.Tensor], torch.Tensor]


def default_loss(task: TaskSpec) -> LossFn:
    def loss(model, out, labels):
        value = task_loss(task, out.logits, labels)
        extra = model.policy.extra_loss(out.state)
        return value if extra is None else value + extra

    return loss


def finetune(
    model,
    task: TaskSpec,
    train: Encoded,
    validation: Encoded,
    cfg: TrainConfig,
    loss_fn: LossFn | None = None,
    parameters=None,
    desc: str = "train",
    device: str = "cpu",
    score_fn: Callable[[object], float] | None = None,
) -> dict:
    """Train in place; restores the best-on-validation weights. Returns a log."""
    loss_fn = loss_fn or default_loss(task)
    score_fn = score_fn or (lambda m: primary(task, evaluate(m, task, validation, "none", cfg.eval_batch_size, device).metrics))
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    steps_per_epoch = max(1, math.ceil(len(train) / cfg.batch_size))
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    warm = int(cfg.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    eval_every = cfg.eval_every or steps_per_epoch
    best_score, best_state, log = -math.inf, None, {"validation": [], "steps": total}
    step = 0
    bar = tqdm(total=total, desc=desc, leave=False, mininterval=2.0)
    while step < total:
        perm = rng.permutation(len(train))
        for s in range(0, len(perm), cfg.batch_size):
            if step >= total:
                break
            model.train()
            batch = collate(train, perm[s : s + cfg.batch_size]).to(device)
            labels = torch.as_tensor(train.labels[batch.index]).to(device)
            out = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            loss = loss_fn(model, out, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            if step % eval_every == 0 or step == total:
                score = float(score_fn(model))
                score = -math.inf if math.isnan(score) else score
                log["validation"].append({"step": step, "score": score})
                if best_state is None or score > best_score:
                    best_score, best_state = score, copy.deepcopy(model.state_dict())
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    log["best_validation"] = best_score
    return log
