"""The papers' experiments as report steps, declared in the profile's config.

`experiments:` maps a name to `{kind: ..., methods: [...], ...}`; each kind
turns records into a table (`results/tables/<name>.*`) and/or a figure
(`figures/<name>.*`). Methods are named by the config, never by the core. An
experiment whose methods the profile does not run is skipped (and listed in
`tables/skipped_experiments.txt`), so a profile can list experiments for
methods it does not run; every other experiment always writes its files, so
the workflow can declare them as outputs.

Kinds: selected_points (LTP Table 1, Magic Pyramid Table 2), wallclock (LTP
Fig. 6), robustness (LTP Table 3), trajectories (LTP Fig. A.2),
selection_cost (LTP Fig. A.1), bucket_speedup (Magic Pyramid Fig. 1),
knob_table (Magic Pyramid Table 3), ratio_table (the seed slides' CoFi
validation), sparsity_curve (CoFi's metric vs sparsity and vs speedup, one
figure per protocol), grouped_points (Infor-Coef Tables 2 and 3: rows declared
in the config, each a method, a knob filter, a padding and a reference row),
padding_claim (every token-dropping method's speedup under the three
protocols and their ratios), policy_cost (the share of FLOPs and wall time a
policy's own products take), method_tradeoff (Infor-Coef Figs. 2-4: metric vs
speedup or remaining FLOPs under one protocol), claims (the papers' claims,
each with a rule fixed in the config, as verdicts: `harness.report.claims`).

bops_tradeoff (LTP Fig. 7: metric vs relative BOPs at every precision) and
precision_survival (each method's timed point at every precision: metric,
speedup over dense at the same precision and over the fastest dense):
`harness.report.precision_tables`.

Every kind also takes `tasks` (only those tasks' records), `metric` (a
metric read in place of each task's primary one) and `precision` (the
records of that precision, default fp32; claims and the two precision kinds
read every precision): see `scoped`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.report import paper_figures as paper_plots
from harness.report.claims import claims_table
from harness.report.buckets import FIXED_BUCKETS, bucket_table, quartile_buckets
from harness.report.grouped_tables import (grouped_points_table, padding_claim_table, policy_cost_table,
                                           tradeoff_points)
from harness.report.paper_tables import selected_points_table, wallclock_table
from harness.report.precision_tables import bops_figure, bops_tradeoff, precision_survival
from harness.report.load import per_example
from harness.report.point_choice import DENSE, fastest_within
from harness.report.structure_tables import ratio_table, sparsity_curve
from harness.report.tables import write_table

def _pick(wanted, names) -> list[str]:
    """`wanted` (or every name, for "all") among `names`, dense aside."""
    names = [m for m in dict.fromkeys(names) if m != DENSE]
    return names if "all" in wanted else [m for m in wanted if m in names]


def _row(df, task, method, op, protocol="none"):
    r = df[(df.task == task) & (df.method == method) & (df.operating_point == op) & (df.protocol == protocol)]
    return r.iloc[0] if len(r) else None


def robustness(df: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per task, points of the methods with the closest relative FLOPs on <=Q2, metric per bucket."""
    out = []
    for task in sorted(df["task"].unique()):
        rows = df[(df.task == task) & (df.protocol == "none")]
        cands = {m: rows[rows.method == m] for m in methods if (rows.method == m).any()}
        if len(cands) < 1:
            continue
        lengths = per_example(rows.iloc[0])["length"]
        buckets = quartile_buckets(lengths)
        tables = {(m, r.operating_point): bucket_table(r, buckets) for m, c in cands.items() for _, r in c.iterrows()}
        low = {k: float(t.iloc[0]["relative_flops"]) for k, t in tables.items()}
        first, *others = list(cands)
        best, best_gap = None, math.inf
        for op in cands[first]["operating_point"]:
            pick = {first: op}
            gap = 0.0
            for m in others:
                near = min(cands[m]["operating_point"], key=lambda o: abs(low[(m, o)] - low[(first, op)]))
                pick[m], gap = near, gap + abs(low[(m, near)] - low[(first, op)])
            if gap < best_gap - 1e-12:
                best, best_gap = pick, gap
        dense = rows[rows.method == DENSE]
        entries = [(DENSE, dense.iloc[0])] if len(dense) else []
        entries += [(m, _row(df, task, m, op)) for m, op in best.items()]
        for m, r in entries:
            for _, b in bucket_table(r, buckets).iterrows():
                out.append({"task": task, "metric": r["metric"], "method": m, "operating_point": r["operating_point"],
                            **b.to_dict()})
    return pd.DataFrame(out)


def trajectories(df: pd.DataFrame, methods: list[str], n: int, tolerance: float) -> pd.DataFrame:
    out = []
    for task in sorted(df["task"].unique()):
        for m in methods:
            chosen, _ = fastest_within(df, task, m, tolerance, "none")
            if chosen is None:
                continue
            ex = per_example(chosen)
            if "tokens_per_layer" not in ex:
                continue
            order = np.argsort(ex["length"].to_numpy(), kind="stable")
            picks = order[np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int))]
            for i in picks:
                out.append({"task": task, "method": f"{m} ({chosen['operating_point']})",
                            "length": int(ex["length"].iloc[i]), "tokens_per_layer": list(ex["tokens_per_layer"].iloc[i])})
    return pd.DataFrame(out)


def bucket_speedup(df: pd.DataFrame, methods: list[str], tolerance: float) -> pd.DataFrame:
    out = []
    for task in sorted(df["task"].unique()):
        for m in methods:
            chosen, met = fastest_within(df, task, m, tolerance, "none")
            if chosen is None:
                continue
            for _, b in bucket_table(chosen, FIXED_BUCKETS).iterrows():
                out.append({"task": task, "method": m, "operating_point": chosen["operating_point"], "met": met,
                            **b.to_dict()})
    return pd.DataFrame(out)


def knob_table(df: pd.DataFrame, methods: list[str], knob, values: list[float]) -> pd.DataFrame:
    """Metric and FLOPs speedup (protocol `none`) of every point whose knob is
    one of `values`. `knob` is a name or a list of names (methods may call the
    same threshold differently, e.g. FastBERT's speed and Magic Pyramid's tau);
    a point's first knob present is used, and the table column is the first name."""
    names = [knob] if isinstance(knob, str) else list(knob)
    out = []
    sub = df[df.protocol == "none"]
    for task in sorted(sub["task"].unique()):
        for m in methods:
            rows = sub[(sub.task == task) & (sub.method == m)]
            for _, r in rows.iterrows():
                knobs = json.loads(r["knobs_json"])
                k = next((knobs[n] for n in names if knobs.get(n) is not None), None)
                if k is not None and any(abs(float(k) - v) < 1e-9 for v in values):
                    out.append({"task": task, "method": m, "operating_point": r["operating_point"],
                                names[0]: float(k), "value": 100 * r["primary_value"],
                                "flops_speedup": r["flops_speedup"]})
    return pd.DataFrame(out)


def _selection_cost_rows(results_dir) -> pd.DataFrame:
    path = Path(results_dir) / "benchmarks" / "selection_cost.json"
    return pd.DataFrame(json.loads(path.read_text())["rows"]) if path.is_file() else pd.DataFrame()


@dataclass(frozen=True)
class Kind:
    """An experiment kind: how its table is computed from records, and its figure."""

    build: Callable[[pd.DataFrame, list[str], dict, Path], pd.DataFrame]
    figure: Callable | None = None  # (table, figures_dir, name) -> paths
    table: bool = True  # whether the table itself is an output
    needs_methods: bool = True  # False: reads a benchmark file, not method records
    per_protocol: bool = False  # one figure per padding protocol (<name>_<protocol>.*) from a `protocol` column
    all_precisions: bool = False  # reads the records of every precision (the others: the spec's `precision`, fp32)


KINDS: dict[str, Kind] = {
    "selected_points": Kind(lambda df, m, s, r: selected_points_table(df, m, s.get("tolerance", 0.01),
                                                                      extra_metrics=s.get("metrics", ()),
                                                                      knobs=s.get("knobs"))),
    "wallclock": Kind(lambda df, m, s, r: wallclock_table(df, m, s.get("target", 2.0)), paper_plots.wallclock_figure),
    "robustness": Kind(lambda df, m, s, r: robustness(df, m), paper_plots.robustness_figure),
    "trajectories": Kind(lambda df, m, s, r: trajectories(df, m, s.get("n_examples", 20), s.get("tolerance", 0.01)),
                         paper_plots.trajectories_figure, table=False),
    "selection_cost": Kind(lambda df, m, s, r: _selection_cost_rows(r), paper_plots.selection_cost_figure,
                           needs_methods=False),
    "bucket_speedup": Kind(lambda df, m, s, r: bucket_speedup(df, m, s.get("tolerance", 0.01)),
                           paper_plots.bucket_speedup_figure),
    "knob_table": Kind(lambda df, m, s, r: knob_table(df, m, s["knob"], s["values"])),
    "ratio_table": Kind(lambda df, m, s, r: ratio_table(df, m, s)),
    "sparsity_curve": Kind(lambda df, m, s, r: sparsity_curve(df, m, s), paper_plots.sparsity_curve_figure,
                           per_protocol=True),
    "grouped_points": Kind(lambda df, m, s, r: grouped_points_table(df, m, s)),
    "padding_claim": Kind(lambda df, m, s, r: padding_claim_table(df, m, s)),
    "policy_cost": Kind(lambda df, m, s, r: policy_cost_table(df, m, s)),
    "method_tradeoff": Kind(lambda df, m, s, r: tradeoff_points(df, m, s), paper_plots.tradeoff_figure),
    # every claim reads its own methods; a claim whose methods did not run is inconclusive, not skipped
    "claims": Kind(lambda df, m, s, r: claims_table(df, s, r), needs_methods=False, all_precisions=True),
    "bops_tradeoff": Kind(lambda df, m, s, r: bops_tradeoff(df, m, s), bops_figure, all_precisions=True),
    "precision_survival": Kind(lambda df, m, s, r: precision_survival(df, m, s), all_precisions=True),
}


def figure_stems(name: str, kind: Kind, protocols) -> list[str]:
    """The figure file stems an experiment writes."""
    if not kind.figure:
        return []
    return [f"{name}_{p}" for p in protocols] if kind.per_protocol else [name]


def wanted_methods(spec: dict) -> list[str]:
    """The methods an experiment names: its `methods`, else the methods of its
    `rows` (grouped_points), else all."""
    return spec.get("methods") or list(dict.fromkeys(r["method"] for r in spec.get("rows", []))) or ["all"]


def configured_methods(spec: dict, methods: list[str]) -> list[str]:
    """The methods of `methods` (those a profile runs) that an experiment reads."""
    return _pick(wanted_methods(spec), methods)


def planned(experiments: dict, methods: list[str]) -> dict[str, dict]:
    """The experiments a profile builds: those whose methods it runs (the
    others are listed in tables/skipped_experiments.txt)."""
    return {name: spec for name, spec in (experiments or {}).items()
            if not KINDS[spec["kind"]].needs_methods or configured_methods(spec, methods)}


def scoped(df: pd.DataFrame, spec: dict, kind: Kind | None = None) -> pd.DataFrame:
    """The records an experiment reads: those of its `precision` (default fp32; a kind that compares
    precisions reads all), only its `tasks` (when given), and with
    `metric` given, that metric in place of each task's primary one (records
    without it are left out), so every kind can plot e.g. SQuAD v2.0's HasAns F1."""
    if "precision" in df.columns and not (kind and kind.all_precisions):
        df = df[df["precision"] == spec.get("precision", "fp32")]
    if spec.get("tasks"):
        df = df[df["task"].isin(spec["tasks"])]
    name = spec.get("metric")
    if name:
        column = f"metric_{name}"
        if column not in df.columns:
            return df.iloc[0:0]
        df = df[df[column].notna()].copy()
        df["metric"], df["primary_value"] = name, df[column]
        df["val_primary_value"] = df[f"val_{name}"] if f"val_{name}" in df.columns else np.nan
    return df


def run_experiments(df: pd.DataFrame, experiments: dict, methods: list[str], results_dir,
                    figures_dir, protocols=("sequence", "batch", "none")) -> list[str]:
    """Build every planned experiment (see `planned`); an experiment without
    data (no records yet, nothing at the asked knob values, no timed protocol)
    still writes its files, saying why they are empty. Returns the paths."""
    written = []
    every = df
    for name, spec in planned(experiments, methods).items():
        kind = KINDS[spec["kind"]]
        df = scoped(every, spec, kind)
        configured = configured_methods(spec, methods)
        present = _pick(configured, df["method"])
        table = kind.build(df, present, spec, Path(results_dir)) if present or not kind.needs_methods else None
        if table is None or table.empty:
            reason = (f"no records of {configured} yet" if table is None else
                      f"the records hold no data for this {spec['kind']} experiment ({_why_empty(spec)})")
            if kind.table:
                written += write_table(placeholder(reason), results_dir, name)
            for stem in figure_stems(name, kind, protocols):
                written += paper_plots.placeholder_figure(reason, figures_dir, stem)
            continue
        if kind.table:
            written += write_table(table, results_dir, name)
        if kind.figure and kind.per_protocol:
            for p, stem in zip(protocols, figure_stems(name, kind, protocols)):
                sub = table[table["protocol"] == p]
                written += (kind.figure(sub, figures_dir, stem) if len(sub) else
                            paper_plots.placeholder_figure(f"no records under protocol {p}", figures_dir, stem))
        elif kind.figure:
            written += kind.figure(table, figures_dir, name)
    return written


def _why_empty(spec: dict) -> str:
    return {
        "wallclock": "no timed protocol",
        "trajectories": "no per-layer token counts under protocol none",
        "knob_table": f"no point has {spec.get('knob')} in {spec.get('values')}",
        "selection_cost": "the selection-cost benchmark has not run",
    }.get(spec["kind"], "no matching points")


def placeholder(reason: str) -> pd.DataFrame:
    out = pd.DataFrame({"note": [f"no data: {reason}"]})
    out.attrs["note"] = f"This experiment has no data: {reason}."
    return out
