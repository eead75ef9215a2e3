"""Paper figures from stored records: length histograms and accuracy/FLOPs trade-offs.

Figures are drawn on the Agg canvas through matplotlib's object API
(`Figure` + `FigureCanvasAgg`) rather than pyplot: no display is needed, the
process-wide backend is left alone for other code, and no figure lingers in
pyplot's registry. Each figure is saved as PNG (for reading) and PDF (for the
paper), atomically, then closed.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.errors import HarnessError
from harness.pareto import pareto_front
from harness.data.lengths import histogram_edges, length_stats
from harness.storage import atomic_output
from harness.report.style import DENSE_IDENTITY, bases_from, identities, legend_order
from harness.report.tables import DENSE_METHOD, FRACTION_METRICS

STYLE: dict[str, Any] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "pdf.fonttype": 42,  # embed TrueType so the PDF text stays editable/searchable
}
TRAIN_COLOR = "tab:blue"
EVAL_COLOR = "tab:orange"


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(max_cols, max(n, 1))
    return math.ceil(n / cols), cols


def _new_figure(n_panels: int, panel_size: tuple[float, float], max_cols: int = 3) -> tuple[Figure, list[Axes]]:
    """A figure with an Agg canvas and a rows x cols grid; unused panels are hidden."""
    rows, cols = _grid(n_panels, max_cols)
    fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows))
    FigureCanvasAgg(fig)
    axes = list(np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _save(fig: Figure, figures_dir: str | os.PathLike[str], stem: str) -> list[str]:
    """Save PNG and PDF atomically (temp file + os.replace), then release the figure."""
    paths = []
    try:
        for ext in ("png", "pdf"):
            dest = Path(figures_dir) / f"{stem}.{ext}"
            # No CreationDate: identical inputs give byte-identical PDFs.
            meta = {"CreationDate": None} if ext == "pdf" else {}
            with atomic_output(dest) as tmp:
                fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=meta)
            paths.append(str(dest))
    finally:
        fig.clear()
    return paths


# --------------------------------------------------------------------------- length histograms


def length_histograms(
    length_records: Mapping[str, dict[str, Any]], figures_dir: str | os.PathLike[str]
) -> list[str]:
    """LTP Fig. 1 style: per task, train vs eval length densities and their 99th percentiles.

    Uses the same equal-width bins as the KL divergence in the length table,
    so what the figure shows is what the number measures.
    """
    if not length_records:
        raise HarnessError(
            "no length records to plot",
            "run the length-analysis step of the workflow so results/lengths/<task>.json exist",
        )
    tasks = sorted(length_records)
    with rc_context(STYLE):
        fig, axes = _new_figure(len(tasks), (4.6, 3.4))
        for ax, task in zip(axes, tasks):
            rec = length_records[task]
            stats = length_stats(rec)
            edges = histogram_edges(rec["train_lengths"], rec["eval_lengths"], stats["bins"])
            ax.hist(rec["train_lengths"], bins=edges, density=True, alpha=0.45, color=TRAIN_COLOR, label="train")
            ax.hist(rec["eval_lengths"], bins=edges, density=True, alpha=0.45, color=EVAL_COLOR, label="eval")
            ax.axvline(stats["train_p99"], color=TRAIN_COLOR, ls="--", lw=1.5,
                       label=f"train p99 = {stats['train_p99']:.0f}")
            ax.axvline(stats["eval_p99"], color=EVAL_COLOR, ls="--", lw=1.5,
                       label=f"eval p99 = {stats['eval_p99']:.0f}")
            ax.set_title(f"{task}  (KL = {stats['kl']:.3f})")
            ax.set_xlabel("sequence length (tokens)")
            ax.set_ylabel("density (per token)")
            ax.legend(loc="best")
        fig.tight_layout()
        return _save(fig, figures_dir, "length_histograms")


# --------------------------------------------------------------------------- trade-off curves


def _select_methods(df: pd.DataFrame, methods: Sequence[str] | None) -> list[str]:
    available = legend_order(set(df["method"]) - {DENSE_METHOD}, bases_from(df))
    if methods is None:
        return available
    unknown = sorted(set(methods) - set(df["method"]))
    if unknown:
        raise HarnessError(
            f"no records for method(s) {unknown} under this protocol",
            f"choose from {sorted(set(df['method']))} or run the workflow for them",
        )
    return [m for m in methods if m != DENSE_METHOD]


SEED_ALPHA = 0.2  # each training seed's points behind the mean over seeds
BAND_ALPHA = 0.12  # dense's interval, a band across the panel


def _interval_pct(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's 95% bootstrap interval of its primary metric (x100; NaN where the record has none)."""
    low, high = np.full(len(df), np.nan), np.full(len(df), np.nan)
    for i, (_, r) in enumerate(df.iterrows()):
        lo, hi = r.get(f"metric_{r['metric']}_low"), r.get(f"metric_{r['metric']}_high")
        if lo is not None and hi is not None and not (pd.isna(lo) or pd.isna(hi)):
            low[i], high[i] = 100.0 * float(lo), 100.0 * float(hi)
    return low, high


def _errors(m: pd.DataFrame):
    """Asymmetric error bars from value_low / value_high (none where they are missing)."""
    if m[["value_low", "value_high"]].isna().all().all():
        return None
    return [(m["value_pct"] - m["value_low"]).clip(lower=0).fillna(0),
            (m["value_high"] - m["value_pct"]).clip(lower=0).fillna(0)]


def _seed_points(per_seed: pd.DataFrame | None, protocol: str, task: str) -> pd.DataFrame | None:
    """One task's per-seed records under `protocol` (relative FLOPs, metric %), or None
    where there is at most one training seed (nothing to draw behind the mean)."""
    if per_seed is None or "seed" not in per_seed.columns or per_seed["seed"].nunique() < 2:
        return None
    s = per_seed[(per_seed["protocol"] == protocol) & (per_seed["task"] == task)]
    return s.assign(rel_flops=s["relative_flops"].astype(float), value_pct=s["primary_value"].astype(float) * 100.0)


def tradeoff_curves(
    df: pd.DataFrame,
    figures_dir: str | os.PathLike[str],
    protocol: str,
    methods: Sequence[str] | None = None,
    per_seed: pd.DataFrame | None = None,
) -> list[str]:
    """Per task: primary metric (%) vs relative FLOPs, one line per method
    through its Pareto-optimal points (the others as faint markers).

    x = the record's relative_flops (1.0 = dense cost under the same padding
    protocol); y = primary metric x 100, every point with its 95% bootstrap
    interval over the eval examples as an error bar. The dense result is a
    solid horizontal line, its interval a faint band, and a star at x = 1;
    "dense - 1" (the usual "within one point" acceptance bar) is dotted. Each method is drawn in its
    look from `harness.report.style` (a variant: its base method's hue, a
    hollow marker, a dashed line). Saved as tradeoff_<protocol>.{png,pdf}.

    With several training seeds, `df` holds the means over seeds
    (`harness.report.seeds.over_seeds`) and `per_seed` the records of each
    seed (`load_records`): each seed's points are drawn faintly (alpha
    `SEED_ALPHA`, small, no line) in the method's look behind the mean's curve,
    and each seed's dense value as a faint line beside the mean's. Relative
    FLOPs are analytic.
    """
    sub = df[df["protocol"] == protocol]
    if sub.empty:
        raise HarnessError(
            f"no records with protocol {protocol!r}",
            f"choose one of {sorted(set(df['protocol']))} or run the workflow for that protocol",
        )
    chosen = _select_methods(sub, methods)
    # one look per method, fixed by its name and base method (not by plotting order)
    looks = identities(set(sub["method"]) - {DENSE_METHOD}, bases_from(sub))
    sub = sub.assign(
        rel_flops=sub["relative_flops"].astype(float),
        value_pct=sub["primary_value"].astype(float) * 100.0,
    )
    low, high = _interval_pct(sub)
    sub = sub.assign(value_low=low, value_high=high)
    tasks = sorted(set(sub["task"]))
    handles: dict[str, Any] = {}
    with rc_context(STYLE):
        fig, axes = _new_figure(len(tasks), (4.6, 3.6))
        for ax, task in zip(axes, tasks):
            t = sub[sub["task"] == task]
            metric = str(t["metric"].iloc[0])
            dense = t[t["method"] == DENSE_METHOD]
            if not dense.empty:
                base = float(dense["value_pct"].iloc[0])
                handles["dense"] = ax.axhline(base, color=DENSE_IDENTITY.color, lw=1.2, label="dense")
                d_low, d_high = float(dense["value_low"].iloc[0]), float(dense["value_high"].iloc[0])
                if np.isfinite(d_low) and np.isfinite(d_high):  # dense's 95% interval over the eval examples
                    handles["dense 95% interval"] = ax.axhspan(d_low, d_high, color=DENSE_IDENTITY.color,
                                                               alpha=BAND_ALPHA, lw=0)
                handles["dense − 1"] = ax.axhline(base - 1.0, color=DENSE_IDENTITY.color, lw=1.0, ls=":",
                                                  label="dense − 1")
                ax.plot([1.0], [base], **DENSE_IDENTITY.line(ms=11, linestyle="none"))
            seeds_t = _seed_points(per_seed, protocol, task)
            if seeds_t is not None:
                for _, d in seeds_t[seeds_t["method"] == DENSE_METHOD].iterrows():
                    ax.axhline(d["value_pct"], color=DENSE_IDENTITY.color, lw=0.8, alpha=SEED_ALPHA)
            for method in chosen:
                m = t[t["method"] == method].sort_values("rel_flops")
                if m.empty:
                    continue
                if seeds_t is not None:  # each seed's points, faint, behind the mean
                    s = seeds_t[seeds_t["method"] == method]
                    ax.plot(s["rel_flops"], s["value_pct"],
                            **looks[method].line(ms=3, linestyle="none", alpha=SEED_ALPHA))
                front = pareto_front(m["rel_flops"].to_numpy(), m["value_pct"].to_numpy())
                look = looks[method]
                # every point with its 95% interval over the eval examples (the record's bootstrap)
                ax.errorbar(m["rel_flops"], m["value_pct"], yerr=_errors(m), capsize=0, elinewidth=0.7,
                            **look.line(ms=4, linestyle="none", alpha=0.4))
                f = m.iloc[list(front)]
                ax.errorbar(f["rel_flops"], f["value_pct"], yerr=_errors(f), capsize=2, elinewidth=0.9,
                            **look.line(ms=6, linestyle="none"))
                (line,) = ax.plot(f["rel_flops"], f["value_pct"], **look.line(ms=6, lw=1.5, label=method))
                handles[method] = line
            ax.set_title(task)
            ax.set_xlabel("relative FLOPs (× dense)")
            ax.set_ylabel(f"{metric} (%)" if metric in FRACTION_METRICS else f"{metric} (× 100)")
        fig.tight_layout()
        if handles:
            fig.legend(list(handles.values()), list(handles.keys()), loc="center left",
                       bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.suptitle(f"Primary metric vs relative FLOPs ({protocol} padding protocol)", y=1.04)
        return _save(fig, figures_dir, f"tradeoff_{protocol}")
