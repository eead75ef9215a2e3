"""The task registry: one place that says what each benchmark task is.

Loading, metrics, padding and reporting all need the same facts about a task
(its text fields, label count, metrics, fixed sequence length for the
'sequence' padding protocol, histogram bins for exit-layer plots). Keeping them
in one frozen table means every module agrees and a new task is one entry.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError

FAMILIES = ("glue", "ag_news", "yelp_polarity", "mr", "squad")
HEADS = ("classify", "span")


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one task."""

    name: str
    family: str  # 'glue' | 'ag_news' | 'yelp_polarity' | 'mr' | 'squad'
    text_fields: tuple[str, ...]  # 1 name (single sentence) or 2 (sentence pair)
    num_labels: int  # 1 = regression; span tasks: 2 (start and end logits per token)
    metrics: tuple[str, ...]
    primary_metric: str
    seq_len: int  # fixed length for the 'sequence' padding protocol
    hist_bins: int  # bins for per-sample histograms (20 for small eval sets)
    head: str = "classify"  # 'classify' (pooler + classifier on [CLS]) | 'span' (start/end logits per token)
    version: str | None = None  # SQuAD version of a span task

    @property
    def is_span(self) -> bool:
        return self.head == "span"

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1 and not self.is_span


def _spec(name: str, family: str, text_fields: tuple[str, ...], num_labels: int,
          metrics: tuple[str, ...], seq_len: int, primary: str | None = None,
          hist_bins: int = 50) -> TaskSpec:
    return TaskSpec(name=name, family=family, text_fields=text_fields,
                    num_labels=num_labels, metrics=metrics,
                    primary_metric=primary or metrics[0], seq_len=seq_len,
                    hist_bins=hist_bins)


def _squad(name: str, version: str, metrics: tuple[str, ...]) -> TaskSpec:
    # 384-token windows (question + context), the usual SQuAD setting; see harness.data.windows
    return TaskSpec(name=name, family="squad", text_fields=("question", "context"), num_labels=2,
                    metrics=metrics, primary_metric="f1", seq_len=384, hist_bins=50, head="span",
                    version=version)


_ACC = ("accuracy",)
_F1_ACC = ("f1", "accuracy")

# seq_len values for sst2/cola/stsb/mrpc/qqp/qnli/mnli/rte follow the usual
# efficient-BERT settings; the others were measured with the MiniLM (BERT
# uncased WordPiece) tokenizer, lengths including [CLS]/[SEP].
_ALL = (
    _spec("cola", "glue", ("sentence",), 2, ("matthews",), 64),
    _spec("sst2", "glue", ("sentence",), 2, _ACC, 64),
    _spec("mrpc", "glue", ("sentence1", "sentence2"), 2, _F1_ACC, 128, hist_bins=20),
    _spec("stsb", "glue", ("sentence1", "sentence2"), 1, ("pearson", "spearman"), 64,
          hist_bins=20),
    _spec("qqp", "glue", ("question1", "question2"), 2, _F1_ACC, 128),
    _spec("mnli", "glue", ("premise", "hypothesis"), 3, _ACC, 128),
    _spec("qnli", "glue", ("question", "sentence"), 2, _ACC, 128),
    _spec("rte", "glue", ("sentence1", "sentence2"), 2, _ACC, 256, hist_bins=20),
    # wnli 128: train pairs p99 88, max 108 tokens, so every pair fits.
    _spec("wnli", "glue", ("sentence1", "sentence2"), 2, _ACC, 128),
    # ag_news 128: title+description p50 50, p99 122, max 277; 99.3% fit (64 fits 85%).
    _spec("ag_news", "ag_news", ("text",), 4, _ACC, 128),
    # yelp_polarity 512: reviews are long (median ~150 tokens, long tail); BERT's maximum.
    _spec("yelp_polarity", "yelp_polarity", ("text",), 2, _ACC, 512),
    # mr 64: snippets p50 26, p99 55, max 78; 99.95% fit in 64.
    _spec("mr", "mr", ("text",), 2, _ACC, 64),
    _squad("squad", "1.1", ("f1", "exact_match")),
    _squad("squad_v2", "2.0", ("f1", "exact_match", "has_answer_f1", "has_answer_exact_match",
                               "no_answer_f1", "no_answer_exact_match")),
)

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _ALL}


def task_names() -> list[str]:
    """Registered task names, in registry order."""
    return list(TASKS)


def get_task(name: str) -> TaskSpec:
    """The spec for `name`; an unknown name raises HarnessError listing the known ones."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in TASKS:
        raise HarnessError(
            f"unknown task {name!r}",
            f"use one of: {', '.join(task_names())}",
        )
    return TASKS[key]
