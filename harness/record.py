"""The result record: one typed, versioned schema for writer, reader and tests.

One record per (task, method, operating point, protocol, precision). The evaluate job
builds a `ResultRecord` and writes `to_dict()`; the report reads files back
through `check_record`, which refuses a record of another `schema_version`
(or with missing or unknown fields) with a message that says how to
regenerate it. Nobody keeps a list of keys by hand: the fields below are the
schema.

Schema history: 1 = flat timing fields with the dense throughput read from
another job's record; 2 = `timing` measured side by side with the dense model
(`harness.measure.timing`), `relative_flops`; 3 = `structure` (encoder
parameters kept, sparsity, heads / FFN dims / hidden dims per layer);
4 = `policy_flops_per_example` (what the policy's own products cost) and,
per timed batch size, `policy_time_share` (the share of the point's forward
time spent in the policy's modules); 5 = `metrics_interval` ({metric: [low, high]}, a
bootstrap over the eval examples, or questions for span tasks: `harness.measure.bootstrap`;
`provenance.bootstrap` says the resamples, confidence, seed and method); 6 = `split_seed` (the
data: splits, caps, bootstrap) beside `seed`, now the training seed alone (one of the config's
`seeds`; records of several training seeds share their eval examples). A version-4 record is
still read: `check_record` computes its interval from its own per-example predictions and labels
with the default bootstrap (and says so in `provenance.bootstrap`). A version-4 or -5 record's one
`seed` set both, so it is read as `split_seed` = `seed`. 7 = the precision axis (`eval.precisions`):
`precision` (part of the record's key: fp32, bf16, fp16 or int8), `bops_per_example`,
`baseline_bops_per_example` and `relative_bops` (bit operations against the full-precision dense model
on the same examples: `harness.measure.flops.bops`), `kernels` (what ran: `harness.measure.kernels`;
null where the point was not timed), and `wallclock_speedup_vs_fastest_dense` (the eval batch's speedup
against the fastest dense precision whose validation metric is within tolerance of fp32 dense's; null
where not timed at the precisions). A version-6 record is read as fp32, its BOPs its MACs x 32 x 32.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

SCHEMA_VERSION = 7
PROTOCOLS: tuple[str, ...] = ("sequence", "batch", "none")
PRECISION_NAMES: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")  # fp16: bf16 asked on a GPU without bf16


@dataclass
class PerExample:
    """Eval examples in dataset order: what length-bucket analyses need, no model."""

    length: list[int]
    label: list
    prediction: list
    flops: list[float]
    baseline_flops: list[float]  # the dense model on the same example under the same protocol
    exit_layer: list[int]
    tokens_per_layer: list[list[int]] | None = None  # under protocol `none` only


@dataclass
class ResultRecord:
    # identity
    method: str  # the registered method or config variant
    base_method: str  # the plugin behind it
    method_config: dict  # the settings given in the config (defaults not repeated)
    operating_point: str
    knobs: dict
    task: str
    protocol: str
    precision: str  # fp32, bf16 (fp16 on a GPU without bf16) or int8: harness.model.precision
    backbone: str
    split_seed: int  # splits, caps' subsamples and bootstrap resamples (the config's split_seed)
    seed: int  # the training seed: initialisation, data order, dropout (one of the config's seeds)
    # data
    n_eval: int
    n_validation: int
    n_train: int
    caps: dict
    data_source: str
    split_note: str
    # quality (fractions; validation = the split choices are made on)
    metric: str
    metrics: dict
    validation_metrics: dict
    # cost (analytic, per example, from the trace; baseline = dense on the same batches)
    flops_per_example: float
    macs_per_example: float
    baseline_flops_per_example: float
    baseline_macs_per_example: float
    flops_speedup: float
    relative_flops: float
    bops_per_example: float  # bit operations: MACs x weight bits x activation bits (harness.measure.flops.bops)
    baseline_bops_per_example: float  # the full-precision (fp32) dense model on the same examples
    relative_bops: float
    policy_flops_per_example: float  # the part the policy's own products cost (scorers, predictors, exit heads)
    tokens_per_layer: list[float]  # mean real tokens entering each layer's attention
    ffn_tokens_per_layer: list[float]
    exit_layer_mean: float
    arch: dict
    structure: dict  # harness.measure.params.structure_summary: parameters kept against dense
    # wall clock, measured side by side with the dense model (None: protocol not timed)
    batch_size: int  # the eval batch size
    timing: dict | None  # threads, n_examples, by_batch_size: {bs: harness.measure.timing.PairedTiming.to_dict()}
    latency_ms_median: float | None  # batch 1, per example (span tasks: per question, the sum over its windows)
    throughput_examples_per_s: float | None  # at the eval batch size (span tasks: questions per second)
    wallclock_speedup: float | None  # at the eval batch size (median over rounds), against dense at this precision
    # at the eval batch size, against the fastest dense precision within tolerance (timing.by_batch_size's
    # `fastest_dense`); None unless this point was timed at every precision
    wallclock_speedup_vs_fastest_dense: float | None
    kernels: dict | None  # the matrix-product operators and kernels one untimed pass ran (harness.measure.kernels)
    # fidelity
    deviations: list[str]
    policy: dict
    notes: dict
    per_example: PerExample
    provenance: dict
    # {metric: [low, high]} of every metric in `metrics` over resampled eval examples (filled by evaluate_job)
    metrics_interval: dict = field(default_factory=dict)
    schema_version: int = field(default=SCHEMA_VERSION)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ResultRecord))
PER_EXAMPLE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PerExample))
_REQUIRED_PER_EXAMPLE = tuple(
    f.name for f in dataclasses.fields(PerExample) if f.default is dataclasses.MISSING
)


def _regenerate(path) -> str:
    return (
        f"regenerate it with this harness: delete {path} (or the whole results folder) and rerun the workflow "
        "(`snakemake --forcerun evaluate` re-evaluates without retraining)"
    )


def check_record(data: Any, path: str | Path) -> dict:
    """`data` (a parsed record file) if it is a record of this schema version;
    otherwise one HarnessError naming the file, the problem and the fix."""
    if not isinstance(data, dict):
        raise HarnessError(f"malformed result record {path}: expected a JSON object", _regenerate(path))
    version = data.get("schema_version", 1)
    if version == 4 and isinstance(data.get("per_example"), dict) and "metrics_interval" not in data:
        data = _from_version_4(data, path)
        version = data["schema_version"]
    if version == 5 and isinstance(data.get("seed"), int):
        data = _from_version_5(data)
        version = data["schema_version"]
    if version == 6:
        data = _from_version_6(data)
        version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise HarnessError(
            f"result record {path} has schema version {version}; this harness reads version {SCHEMA_VERSION}",
            _regenerate(path),
        )
    missing = [k for k in FIELDS if k not in data]
    unknown = [k for k in data if k not in FIELDS]
    if missing or unknown:
        what = "; ".join(s for s in (missing and f"lacks {', '.join(missing)}", unknown and
                                     f"has unknown field(s) {', '.join(unknown)}") if s)
        raise HarnessError(f"result record {path} {what}", _regenerate(path))
    per = data["per_example"]
    if not isinstance(per, dict) or any(k not in per for k in _REQUIRED_PER_EXAMPLE):
        raise HarnessError(f"result record {path}: per_example lacks {list(_REQUIRED_PER_EXAMPLE)}", _regenerate(path))
    if data["precision"] not in PRECISION_NAMES:
        raise HarnessError(
            f"result record {path} has precision {data['precision']!r}; expected one of {list(PRECISION_NAMES)}",
            _regenerate(path),
        )
    if data["protocol"] not in PROTOCOLS:
        raise HarnessError(
            f"result record {path} has protocol {data['protocol']!r}; expected one of {list(PROTOCOLS)}",
            _regenerate(path),
        )
    if not isinstance(data["metrics"], dict) or not isinstance(data["validation_metrics"], dict):
        raise HarnessError(f"result record {path}: metrics and validation_metrics must be JSON objects",
                           _regenerate(path))
    if data["metric"] not in data["metrics"]:
        raise HarnessError(
            f"result record {path}: primary metric {data['metric']!r} is not in its metrics {sorted(data['metrics'])}",
            _regenerate(path),
        )
    interval = data["metrics_interval"]
    if not isinstance(interval, dict) or any(k not in data["metrics"] for k in interval):
        raise HarnessError(f"result record {path}: metrics_interval must map metrics of {sorted(data['metrics'])} "
                           "to [low, high]", _regenerate(path))
    return data


def _from_version_4(data: dict, path) -> dict:
    """A version-4 record read as version 5 (then 6): the bootstrap interval computed now
    from the record's own per-example predictions and labels (default settings)."""
    from harness.measure.bootstrap import BootstrapSpec, metric_interval

    spec, per = BootstrapSpec(), data["per_example"]
    try:
        interval = metric_interval(data["task"], per["prediction"], per["label"], spec)
    except (HarnessError, KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"result record {path} has schema version 4 and its interval cannot be computed "
                           f"from its per-example data: {exc}", _regenerate(path)) from exc
    prov = dict(data.get("provenance") or {})
    prov["bootstrap"] = {**spec.to_dict(), "computed": "when read (a schema-version-4 record)"}
    return {**data, "metrics_interval": {k: list(v) for k, v in interval.items()}, "provenance": prov,
            "schema_version": 5}


def _from_version_5(data: dict) -> dict:
    """A version-5 record read as version 6: its one `seed` set the splits as well as the training."""
    out = {}
    for key, value in data.items():  # split_seed goes where version 6 writes it, before seed
        if key == "seed":
            out["split_seed"] = data.get("split_seed", value)
        if key != "split_seed":
            out[key] = value
    return {**out, "schema_version": 6}


def _from_version_6(data: dict) -> dict:
    """A version-6 record read as version 7: fp32, its bit operations its MACs at 32 x 32 bits."""
    macs, base = data.get("macs_per_example"), data.get("baseline_macs_per_example")
    added = {"protocol": {"precision": "fp32"},
             "relative_flops": {"bops_per_example": None if macs is None else 1024.0 * macs,
                                "baseline_bops_per_example": None if base is None else 1024.0 * base,
                                "relative_bops": data.get("relative_flops")},
             "wallclock_speedup": {"wallclock_speedup_vs_fastest_dense": None, "kernels": None}}
    out = {}
    for key, value in data.items():  # the new fields where version 7 writes them
        out[key] = value
        for new, default in added.get(key, {}).items():
            out.setdefault(new, data.get(new, default))
    return {**out, "schema_version": SCHEMA_VERSION}
