"""Paper tables built from the records frame, written as CSV, Markdown and LaTeX.

Each table is a plain DataFrame first (so tests can check values), then
`write_table` emits `<results_dir>/tables/<name>.{csv,md,tex}`. The CSV keeps
full precision for downstream analysis; Markdown and LaTeX are formatted for
reading. LaTeX is written by a small booktabs writer here because pandas'
`DataFrame.to_latex` needs jinja2 since pandas 2.0, which the harness does not
depend on. A table's explanatory note travels in `df.attrs["note"]` and is
printed under the Markdown and LaTeX tables.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.data.lengths import length_stats
from harness.measure.bootstrap import BootstrapSpec, Comparison, paired_statistic
from harness.record import PROTOCOLS
from harness.storage import atomic_write_text

DENSE_METHOD = "dense"
FRACTION_METRICS: frozenset[str] = frozenset({"accuracy", "acc", "f1"})
COEFFICIENT_METRICS: frozenset[str] = frozenset({"matthews", "mcc", "pearson", "spearman"})
BASELINE_NOTE = (
    "eval_value is x100: accuracy and F1 are percentages (fraction x 100); "
    "Matthews, Pearson and Spearman are the raw coefficient x 100. "
    "GFLOPs are analytic per example; latency is the median per-example latency in ms at batch size 1 "
    "(examples run one at a time; empty where the profile does not time batch 1); throughput is examples/s at the record's batch_size. eval_value and n_eval come from the first protocol "
    "present in the order sequence, batch, none."
)
LENGTH_NOTE = (
    "Lengths are token counts incl. [CLS]/[SEP], untruncated. Quartiles use linear "
    "interpolation. kl = KL(train || eval) in nats over bins equal-width bins on the "
    "common [min, max] range, with add-1/2 (Krichevsky-Trofimov) pseudo-counts per bin, "
    "stable for small eval sets; kl_floor = (B-1)/2 (1/n_train + 1/n_eval), what two samples of "
    "one distribution give (B = bins with mass): a kl near it means no measurable shift. "
    "ltp_kl = the value printed in LTP's Table 2 (Kim et al., KDD 2022; RoBERTa tokenizer, "
    "full GLUE splits, their estimator unstated)."
)
# LTP Table 2 (Kim et al., KDD 2022), KL divergence column; MNLI = MNLI-m
LTP_TABLE2_KL = {"mnli": 0.0055, "qqp": 0.0006, "qnli": 0.0092, "sst2": 1.2250, "stsb": 0.0925,
                 "mrpc": 0.0033, "rte": 0.0261}
DEFAULT_FLOATFMT = ".4g"
PAIRED_NOTE = (
    "paired bootstrap interval: the same eval examples resampled for both records ({resamples} resamples, "
    "{confidence:.0%}, percentile; questions for span tasks; eval-sampling noise only, not training noise)."
)

# --------------------------------------------------------------------------- formatting


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _format_cell(value: Any, fmt: str) -> str | None:
    """Render one cell; None marks a missing value (each writer picks its own dash)."""
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return str(int(value))
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f"):
        return format(float(value), fmt)
    return str(value)


def _formatted(df: pd.DataFrame, floatfmt: Mapping[str, str]) -> list[list[str | None]]:
    return [
        [_format_cell(v, floatfmt.get(col, DEFAULT_FLOATFMT)) for col, v in zip(df.columns, row)]
        for row in df.itertuples(index=False, name=None)
    ]


def _numeric_columns(df: pd.DataFrame) -> list[bool]:
    return [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]


def to_markdown(df: pd.DataFrame, floatfmt: Mapping[str, str] | None = None) -> str:
    """Markdown via pandas/tabulate, numbers right-aligned, missing cells as an em dash."""
    cells = _formatted(df, floatfmt or {})
    text = pd.DataFrame([[("—" if c is None else c) for c in row] for row in cells], columns=df.columns)
    align = ["right" if n else "left" for n in _numeric_columns(df)]
    if len(df):
        body = text.to_markdown(index=False, disable_numparse=True, colalign=align)
    else:  # tabulate cannot align an empty table; a header alone still documents the columns
        body = "| " + " | ".join(map(str, df.columns)) + " |\n|" + "---|" * len(df.columns)
    note = df.attrs.get("note")
    return body + (f"\n\n*Note:* {note}\n" if note else "\n")


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (task names like sst_2 would break otherwise)."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(df: pd.DataFrame, floatfmt: Mapping[str, str] | None = None) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); missing cells as an en dash."""
    cells = _formatted(df, floatfmt or {})
    spec = "".join("r" if n else "l" for n in _numeric_columns(df))
    lines = [
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(str(c)) for c in df.columns) + " \\\\",
        "\\midrule",
    ]
    lines += [" & ".join("--" if c is None else latex_escape(c) for c in row) + " \\\\" for row in cells]
    lines.append("\\bottomrule")
    note = df.attrs.get("note")
    if note:
        lines.append(
            f"\\multicolumn{{{len(df.columns)}}}{{p{{0.95\\linewidth}}}}{{\\footnotesize Note: {latex_escape(note)}}} \\\\"
        )
    lines.append("\\end{tabular}")
    return "\n".join(lines) + "\n"


def write_table(
    df: pd.DataFrame,
    results_dir: str | os.PathLike[str],
    name: str,
    floatfmt: Mapping[str, str] | None = None,
) -> list[str]:
    """Write `<results_dir>/tables/<name>.{csv,md,tex}` atomically; return the paths.

    `floatfmt` maps column -> format spec for Markdown/LaTeX (default '.4g');
    the CSV keeps full precision. `df.attrs["note"]` is appended to md/tex.
    """
    out_dir = Path(results_dir) / "tables"
    fmt = dict(floatfmt or df.attrs.get("floatfmt", {}))
    texts = {
        "csv": df.to_csv(index=False),
        "md": to_markdown(df, fmt),
        "tex": to_latex(df, fmt),
    }
    return [atomic_write_text(out_dir / f"{name}.{ext}", text) for ext, text in texts.items()]


# --------------------------------------------------------------------------- tables


def metric_x100(metric: str, value: float) -> float:
    """Scale a metric for display: x100 (fractions -> %, coefficients -> raw x100), 2 d.p."""
    if _is_missing(value):
        return math.nan
    return round(float(value) * 100.0, 2)


def baseline_table(df: pd.DataFrame) -> pd.DataFrame:
    """The dense baseline per task: metric, eval value (x100), n_eval, cost per protocol.

    Columns: task, metric, eval_value, n_eval, then for each protocol p in
    (sequence, batch, none): gflops_<p> (flops_per_example / 1e9),
    latency_ms_<p> (median) and throughput_<p> (examples/s); NaN where a
    protocol was not run. The dense row is the reference every other method's
    speed-up is measured against, so it is reported on its own. From an
    `over_seeds` frame with several training seeds, eval_value is the mean over
    seeds, followed by eval_value_seed_low / _high (its t interval) and n_seeds.
    """
    from harness.report.seeds import SEED_NOTE, several_seeds

    several = several_seeds(df)
    dense = df[df["method"] == DENSE_METHOD]
    if dense.empty:
        raise HarnessError(
            f"no records for the {DENSE_METHOD!r} method, so there is no baseline table",
            f"run the workflow with the {DENSE_METHOD!r} method for each task",
        )
    rows = []
    for task, group in sorted(dense.groupby("task"), key=lambda kv: str(kv[0])):
        by_proto = {p: group[group["protocol"] == p] for p in PROTOCOLS}
        first = next(g.iloc[0] for g in by_proto.values() if not g.empty)
        row: dict[str, Any] = {
            "task": task,
            "metric": first["metric"],
            "eval_value": metric_x100(first["metric"], first["primary_value"]),
            **({k.replace("value_", "eval_value_"): v for k, v in seed_columns(first, "value").items()}
               if several else {}),
            "n_eval": int(first["n_eval"]),
        }
        for p, g in by_proto.items():
            rec = g.iloc[0] if not g.empty else None
            row[f"gflops_{p}"] = math.nan if rec is None else float(rec["flops_per_example"]) / 1e9
        for p, g in by_proto.items():
            rec = g.iloc[0] if not g.empty else None
            row[f"latency_ms_{p}"] = math.nan if rec is None else _float(rec.get("latency_ms_median"))
        for p, g in by_proto.items():
            rec = g.iloc[0] if not g.empty else None
            row[f"throughput_{p}"] = math.nan if rec is None else _float(rec.get("throughput_examples_per_s"))
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["note"] = BASELINE_NOTE + (" " + SEED_NOTE if several else "")
    out.attrs["floatfmt"] = {
        "eval_value": ".2f", "eval_value_seed_low": ".2f", "eval_value_seed_high": ".2f",
        **{f"gflops_{p}": ".3f" for p in PROTOCOLS},
        **{f"latency_ms_{p}": ".2f" for p in PROTOCOLS},
        **{f"throughput_{p}": ".1f" for p in PROTOCOLS},
    }
    return out


# --------------------------------------------------------------------------- paired intervals


@lru_cache(maxsize=64)
def _cached_record(path: str, mtime_ns: int, size: int) -> dict:
    from harness.report.load import _read_json
    return _read_json(Path(path), "result record")


def _record_file(path: str) -> dict:
    """A record file, read once per report (re-read when the file changes)."""
    st = os.stat(path)
    return _cached_record(path, st.st_mtime_ns, st.st_size)


def _examples(row: Mapping, path: str | None = None) -> tuple[dict, BootstrapSpec]:
    path = str(path or row["record_path"])
    data = _record_file(path)
    per = data.get("per_example") or {}
    if "prediction" not in per:
        raise HarnessError(f"result record {path} has no per-example predictions",
                           "regenerate it with the current workflow")
    return per, BootstrapSpec.from_dict((data.get("provenance") or {}).get("bootstrap"))


def _seed_paths(row: Mapping) -> list[str]:
    """The records behind a row: every training seed's (an `over_seeds` row), else its own."""
    paths = row.get("record_paths") if hasattr(row, "get") else None
    if isinstance(paths, (list, tuple)) and len(paths) > 0:
        return [str(p) for p in paths]
    return [str(row["record_path"])]


def paired_comparison(rows: list[Mapping], metric: str | None = None, combine=None, *,
                      buckets: tuple[float, float] | None = None) -> Comparison:
    """`combine(metric of rows[0], metric of rows[1], ...)` (default: rows[0] - rows[1]) from the
    records' per-example predictions, with its paired bootstrap interval (fractions, as the records'
    metrics). The records must cover the same eval examples (same count, lengths and labels): a
    HarnessError names the two that do not. `buckets=(lo, hi)` keeps the examples with lo < length <= hi.
    The bootstrap settings are the first record's (`provenance.bootstrap`; defaults where absent).
    A row folding several training seeds (`record_paths`, from `harness.report.seeds.over_seeds`) enters
    `combine` as the mean over its seeds of the metric, every seed's record on the same resampled examples.
    """
    from harness.data.tasks import get_task

    first = rows[0]
    metric = metric or first["metric"]
    groups = [_seed_paths(r) for r in rows]
    per, spec = _examples(first, groups[0][0])
    pers, owners = [], []
    for r, paths in zip(rows, groups):
        for path in paths:
            pers.append(per if path == groups[0][0] else _examples(r, path)[0])
            owners.append((r, path))
    for (r, path), other in zip(owners[1:], pers[1:]):
        for key in ("prediction", "length", "label"):
            same = len(other.get(key, [])) == len(per.get(key, [])) and (key == "prediction" or other[key] == per[key])
            if not same:
                raise HarnessError(
                    f"cannot pair {r['method']} {r['operating_point']} ({path}) with {first['method']} "
                    f"{first['operating_point']} ({groups[0][0]}): their eval examples differ ({key}s)",
                    "compare records evaluated on the same eval split: re-run both with the same data, caps and "
                    "split_seed")
    keep = None
    if buckets is not None:
        lengths = np.asarray(per["length"])
        keep = np.nonzero((lengths > buckets[0]) & (lengths <= buckets[1]))[0]
    pick = (lambda xs: xs) if keep is None else (lambda xs: [xs[i] for i in keep])
    combine = combine or (lambda a, b: a - b)
    bounds = np.cumsum([0] + [len(g) for g in groups])
    if bounds[-1] > len(groups):  # several seeds somewhere: each row's metric is its seeds' mean
        inner = combine

        def combine(*values):
            return inner(*(np.mean(np.stack(values[a:b]), axis=0) for a, b in zip(bounds[:-1], bounds[1:])))
    return paired_statistic(get_task(first["task"]), metric, [pick(p["prediction"]) for p in pers],
                            pick(per["label"]), combine, spec)


def seed_columns(row: Mapping | None, prefix: str, metric: str | None = None) -> dict[str, float]:
    """{prefix_seed_low, prefix_seed_high, <n>}: the t-based interval over training seeds of a row's
    primary metric (x100; `harness.report.seeds`) and how many seeds are behind it (`n_seeds` for the
    value column, `<prefix>_n_seeds` otherwise). NaN bounds with one seed."""
    n_key = "n_seeds" if prefix == "value" else f"{prefix}_n_seeds"
    if row is None:
        return {f"{prefix}_seed_low": math.nan, f"{prefix}_seed_high": math.nan, n_key: 0}
    metric = metric or row["metric"]
    return {f"{prefix}_seed_low": metric_x100(metric, row.get("primary_value_seed_low", math.nan)),
            f"{prefix}_seed_high": metric_x100(metric, row.get("primary_value_seed_high", math.nan)),
            n_key: int(row.get("n_seeds", 1) or 1)}


def vs_dense_columns(row: Mapping, dense: Mapping | None, prefix: str = "vs_dense") -> dict[str, float]:
    """{prefix, prefix_low, prefix_high}: row's eval metric - dense's (x100, from the records' metrics, so
    it is exactly the difference of the tables' value columns) and its paired interval (per-example data)."""
    if dense is None:
        return {prefix: math.nan, f"{prefix}_low": math.nan, f"{prefix}_high": math.nan}
    c = paired_comparison([row, dense])
    value = metric_x100(row["metric"], row["primary_value"]) - metric_x100(row["metric"], dense["primary_value"])
    return {prefix: round(value, 2), f"{prefix}_low": 100 * c.low, f"{prefix}_high": 100 * c.high}


def paired_note(rows: list[Mapping]) -> str:
    """How the paired intervals of `rows`' comparisons were drawn, for a table's note."""
    spec = _examples(rows[0])[1] if rows else BootstrapSpec()
    return PAIRED_NOTE.format(resamples=spec.resamples, confidence=spec.confidence)


def _float(value: Any) -> float:
    return math.nan if _is_missing(value) else float(value)


def length_table(length_records: Mapping[str, dict[str, Any]]) -> pd.DataFrame:
    """LTP Table 2: per task train Q1/Q2/Q3, eval Q1/Q2/Q3, KL(train || eval), bins."""
    cols = ["task", "train_q1", "train_q2", "train_q3", "eval_q1", "eval_q2", "eval_q3", "kl", "kl_floor", "bins",
            "n_train", "n_eval"]
    rows = [length_stats(length_records[t]) for t in sorted(length_records)]
    out = pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=cols)
    out.insert(cols.index("kl_floor") + 1, "ltp_kl", [LTP_TABLE2_KL.get(t, math.nan) for t in out["task"]])
    out.attrs["note"] = LENGTH_NOTE
    out.attrs["floatfmt"] = {**{c: ".1f" for c in cols[1:7]}, "kl": ".4f", "kl_floor": ".4f", "ltp_kl": ".4f"}
    return out
