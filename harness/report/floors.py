"""Dense baselines that work: a floor per task that dense's eval metric must clear.

Why: a verdict comparing methods on a task where the dense model itself learned nothing (CoLA at MCC
0.00, SQuAD at F1 9) compares noise with noise. Each task's floor is the larger of

* what a **constant predictor** scores on the same eval examples (from dense's record): the majority
  class's share for accuracy, the F1 of predicting the positive class everywhere for F1, 0 for
  Matthews and correlations, the share of unanswerable questions for SQuAD v2.0's F1 (predict "no
  answer" everywhere; 0 for v1.1);
* a **stated** value for the task's primary metric (`dense_floors: {task: value}` in the config, on
  the metrics' 0-1 scale; the schema's defaults name CoLA's MCC, STS-B's Pearson and SQuAD's F1, which a
  constant predictor says nothing about).

Dense clears its floor when the **lower end** of its eval metric's bootstrap interval (the record's
`metrics_interval`; with several seeds, the mean of the seeds' bounds) is above it: clearly above, not
by luck of the eval sample. A task whose dense does not makes every claim on it inconclusive ("dense
baseline below its floor"); `floors_table` is the report's first table.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from harness.data.tasks import get_task
from harness.report.load import per_example
from harness.report.point_choice import dense_row
from harness.report.tables import metric_x100

NOTE = ("A working dense model must clear a floor on each task: the larger of what a constant predictor scores "
        "on the same eval examples (`constant`: majority share for accuracy, all-positive F1, 0 for Matthews and "
        "correlations, the unanswerable share for SQuAD v2.0 F1) and the config's stated value (`dense_floors`). "
        "clears = the lower end of dense's 95% bootstrap interval is above the floor. A task that does not makes "
        "every verdict on it inconclusive (dense baseline below its floor). Values x100.")
REFERENCE_NOTE = (" reference = the mean of Hugging Face's own fine-tunes of the same backbone on the same splits and "
                  "hyperparameters (`reference_seeds`; harness/run/hf_reference.py); agrees = it lies within dense's mean "
                  "+- agreement_half_width, t(n-1) x sd x sqrt(1/n_dense + 1/n_reference) over dense's seeds (empty "
                  "with one dense seed: no spread to compare with).")


def constant_score(task: str, metric: str, labels) -> tuple[float, str]:
    """(score, how) of the best constant prediction for `metric` on eval labels `labels`."""
    spec = get_task(task)
    if spec.is_span:
        if spec.version != "2.0":
            return 0.0, "empty answer"
        # "no answer" everywhere scores the unanswerable share on F1 and exact match (the primary metrics)
        if metric in ("f1", "exact_match") and len(labels):
            return float(np.mean([not gold for gold in labels])), "no answer everywhere"
        return 0.0, "no answer everywhere"
    y = np.asarray(labels)
    if metric == "accuracy":
        values, counts = np.unique(y, return_counts=True)
        return float(counts.max() / len(y)), f"majority class {values[counts.argmax()]}"
    if metric == "f1":
        p = float(np.mean(y == 1))
        return (2 * p / (1 + p) if p > 0 else 0.0), "positive everywhere"
    return 0.0, "constant (no correlation)"


def floor_of(cfg: Mapping | None, task: str, metric: str, labels) -> dict:
    """{constant, constant_rule, stated, floor} for a task's primary metric (fractions)."""
    constant, rule = constant_score(task, metric, labels)
    stated = ((cfg or {}).get("dense_floors") or {}).get(task)
    stated = math.nan if stated is None else float(stated)
    return {"constant": constant, "constant_rule": rule, "stated": stated,
            "floor": max(constant, stated) if math.isfinite(stated) else constant}


def _labels(row) -> list:
    return per_example(row).get("label", [])  # span tasks: each question's gold answers


def dense_floor(df: pd.DataFrame, task: str, cfg: Mapping | None) -> dict | None:
    """Dense's primary metric on `task` against its floor (None without a dense record)."""
    dense = dense_row(df, task, "none")
    if dense is None:
        return None
    metric = get_task(task).primary_metric
    low = dense.get(f"metric_{metric}_low", math.nan)
    low = float(low) if low is not None and not pd.isna(low) else math.nan
    high = dense.get(f"metric_{metric}_high", math.nan)
    out = {"task": task, "metric": metric, "dense": float(dense["primary_value"]), "dense_low": low,
           "dense_high": float(high) if high is not None and not pd.isna(high) else math.nan,
           **floor_of(cfg, task, metric, _labels(dense))}
    out["clears"] = bool(math.isfinite(low) and low > out["floor"])
    return out


def below_floor(df: pd.DataFrame, task: str | None, cfg: Mapping | None) -> str:
    """The reason every verdict on `task` is inconclusive, or "" when dense clears its floor."""
    if task is None:
        return ""
    f = dense_floor(df, task, cfg)
    if f is None or f["clears"]:
        return ""
    return (f"dense baseline below its floor: {f['metric']} {100 * f['dense']:.1f} "
            f"[{100 * f['dense_low']:.1f}, {100 * f['dense_high']:.1f}] does not clear "
            f"{100 * f['floor']:.1f} ({_source(f)})")


def _source(f: Mapping) -> str:
    if math.isfinite(f["stated"]) and f["stated"] >= f["constant"]:
        return "stated in dense_floors"
    return f"a constant predictor: {f['constant_rule']}"


def reference_values(results_dir, task: str, metric: str) -> list[float]:
    """The primary metric of each Hugging Face reference fine-tune on `task` (results/reference/<task>/seed<s>.json,
    the `reference` jobs of `reference_seeds`), in seed order."""
    folder = Path(results_dir) / "reference" / task
    values = []
    for path in sorted(folder.glob("seed*.json"), key=lambda p: int(p.stem[4:]) if p.stem[4:].isdigit() else -1):
        data = json.loads(path.read_text())
        if metric in (data.get("metrics") or {}):
            values.append(float(data["metrics"][metric]))
    return values


def agreement(dense: pd.Series, refs: list[float]) -> tuple[float, float, bool | None]:
    """(reference mean, half-width, agrees) of the references against dense's spread over its seeds: the
    reference mean must lie within mean_dense +- t(n-1) x sd x sqrt(1/n_dense + 1/n_ref) (a prediction interval
    for n_ref new seeds' mean, with the reference's seeds assumed as noisy as dense's). None with one dense
    seed: there is no spread to compare with."""
    mean = float(np.mean(refs))
    n = int(dense.get("n_seeds", 1) or 1)
    sd = dense.get("primary_value_sd", math.nan)
    if n < 2 or sd is None or pd.isna(sd):
        return mean, math.nan, None
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1) * float(sd) * math.sqrt(1 / n + 1 / len(refs)))
    return mean, half, bool(abs(mean - float(dense["primary_value"])) <= half)


def floors_table(df: pd.DataFrame, cfg: Mapping | None) -> pd.DataFrame:
    """One row per task with a dense record: dense's metric and interval, the floor and whether it clears,
    and the Hugging Face reference beside it where it ran."""
    rows = []
    for task in sorted(df["task"].unique()):
        f = dense_floor(df, task, cfg)
        if f is None:
            continue
        dense = dense_row(df, task, "none")
        row = {"task": task, "metric": f["metric"], "dense": metric_x100(f["metric"], f["dense"]),
               "dense_low": 100 * f["dense_low"], "dense_high": 100 * f["dense_high"],
               "dense_seeds": int(dense.get("n_seeds", 1) or 1),
               "constant": 100 * f["constant"], "constant_rule": f["constant_rule"],
               "stated": 100 * f["stated"], "floor": 100 * f["floor"], "clears": f["clears"],
               "reference": math.nan, "reference_seeds": 0, "agreement_half_width": math.nan, "agrees": None}
        refs = reference_values((cfg or {}).get("results_dir", ""), task, f["metric"]) if cfg else []
        if refs:
            mean, half, agrees = agreement(dense, refs)
            row.update(reference=100 * mean, reference_seeds=len(refs), agreement_half_width=100 * half,
                       agrees=agrees)
        rows.append(row)
    out = pd.DataFrame(rows, columns=["task", "metric", "dense", "dense_low", "dense_high", "dense_seeds", "constant",
                                      "constant_rule", "stated", "floor", "clears", "reference", "reference_seeds",
                                      "agreement_half_width", "agrees"])
    out.attrs["note"] = NOTE + REFERENCE_NOTE
    out.attrs["floatfmt"] = {c: ".2f" for c in ("dense", "dense_low", "dense_high", "constant", "stated", "floor")}
    return out
