"""Figures of the papers' experiments, from records only.

* `robustness_figure`   - LTP Table 3 as bars: metric per eval length bucket.
* `trajectories_figure` - LTP Fig. A.2: kept tokens per layer for examples
                          spread over length, one panel per method.
* `selection_cost_figure` - LTP Fig. A.1: top-k vs threshold latency.
* `bucket_speedup_figure` - Magic Pyramid Fig. 1: FLOPs speedup per length
                          bucket, grouped bars per task.
* `wallclock_figure`    - measured throughput speedup vs FLOPs speedup.
* `sparsity_curve_figure` - CoFi's main figure: metric vs sparsity and metric
                          vs speedup (FLOPs and wall-clock), dense as a line.
* `tradeoff_figure`     - Infor-Coef Figs. 2-4: metric vs FLOPs speedup (or
                          remaining FLOPs) per method under one protocol, dense
                          as a line, an optional shaded speedup range.

Every per-method series is drawn in its method's look from
`harness.report.style` (one colour and marker per method in every figure; a
variant or a knob series takes its base method's hue with a hollow marker, a
dashed line or a hatched bar). Error bars are drawn where the table carries an
interval: today only wall-clock speedups have one (`wall_bs<b>_low/_high`, the
95% interval of the median over timing rounds). Metrics, FLOPs and sparsity
carry none, so their points have no bars and dense's line no band.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.ticker import MaxNLocator

from harness.report.figures import STYLE, _new_figure, _save
from harness.report.style import DENSE, Identity, bases_from, identities

# Batch sizes in one figure: a method's marker, filled differently per size (the largest filled).
SIZE_FILLS = ("none", "bottom", "left", "top", "right")


def _fill(i: int, n: int) -> str:
    return "full" if i == n - 1 else SIZE_FILLS[i % len(SIZE_FILLS)]


def _size_handles(sizes) -> list:
    """Legend entries for the batch sizes: a grey circle in each size's fill."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color="0.4", marker="o", linestyle="none", fillstyle=_fill(i, len(sizes)),
                   label=f"batch {b}") for i, b in enumerate(sizes)]


def _proxy(look: Identity, **extra):
    """A legend entry in a series' look."""
    from matplotlib.lines import Line2D

    return Line2D([], [], **look.line(**extra))


UNRELIABLE_ALPHA = 0.3  # a timing whose interval missed its target (harness.report.timings)


def _missed(pts: pd.DataFrame, column: str) -> pd.Series:
    """Rows whose timing at `column` missed its target (`<column>_reliable` False; unknown counts as met)."""
    flag = f"{column}_reliable"
    if flag not in pts.columns:
        return pd.Series(False, index=pts.index)
    return pts[flag].map(lambda v: v is False or (isinstance(v, (bool, np.bool_)) and not v))


def _wall_errors(pts: pd.DataFrame, column: str):
    """Asymmetric error bars from `<column>_low/_high` where the table has them, else None."""
    if f"{column}_low" not in pts.columns or f"{column}_high" not in pts.columns:
        return None
    return [(pts[column] - pts[f"{column}_low"]).clip(lower=0), (pts[f"{column}_high"] - pts[column]).clip(lower=0)]


def _grouped_bars(ax, table: pd.DataFrame, group: str, series: str, value: str, ylabel: str) -> None:
    groups = list(dict.fromkeys(table[group]))
    names = list(dict.fromkeys(table[series]))
    looks = identities(names, bases_from(table, series))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(groups))
    for i, name in enumerate(names):
        sub = table[table[series] == name].set_index(group)
        ys = [float(sub[value].get(g, np.nan)) if g in sub.index else np.nan for g in groups]
        # no error bars: bucket metrics and FLOPs speedups carry no interval
        ax.bar(x + (i - (len(names) - 1) / 2) * width, ys, width, label=name, **looks[name].bar())
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)


def robustness_figure(table: pd.DataFrame, figures_dir: str | os.PathLike, stem: str) -> list[str]:
    tasks = list(dict.fromkeys(table["task"]))
    with rc_context(STYLE):
        fig, axes = _new_figure(len(tasks), (4.8, 3.6))
        for ax, task in zip(axes, tasks):
            t = table[table["task"] == task]
            _grouped_bars(ax, t, "bucket", "method", "value", f"{t['metric'].iloc[0]} (×100)")
            ax.set_title(f"{task}: metric per eval length bucket")
            ax.set_xlabel("eval length bucket")
        axes[0].legend()
        fig.tight_layout()
        return _save(fig, figures_dir, stem)


def trajectories_figure(traj: pd.DataFrame, figures_dir: str | os.PathLike, stem: str) -> list[str]:
    """traj columns: task, method, length, tokens_per_layer (list). One method
    per panel (named in its title); colour here is the example's length."""
    panels = list(dict.fromkeys(zip(traj["task"], traj["method"])))
    lengths = traj["length"].astype(float)
    norm = (lengths - lengths.min()) / max(1.0, lengths.max() - lengths.min())
    with rc_context(STYLE):
        fig, axes = _new_figure(len(panels), (4.6, 3.6))
        for ax, (task, method) in zip(axes, panels):
            sel = traj[(traj["task"] == task) & (traj["method"] == method)]
            for idx, row in sel.iterrows():
                tokens = list(row["tokens_per_layer"])
                ax.plot(range(1, len(tokens) + 1), tokens, color=_cmap(norm[idx]), lw=1.2)
            ax.set_title(f"{task}: {method}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("layer")
            ax.set_ylabel("tokens entering attention")
        fig.tight_layout()
        return _save(fig, figures_dir, stem)


def _cmap(v: float):
    from matplotlib import colormaps

    return colormaps["viridis"](float(v))


def selection_cost_figure(rows: pd.DataFrame, figures_dir: str | os.PathLike, stem: str) -> list[str]:
    ratios = sorted(rows["ratio"].unique())
    with rc_context(STYLE):
        fig, axes = _new_figure(2, (4.8, 3.6))
        for r in ratios:
            sub = rows[rows["ratio"] == r].sort_values("length")
            axes[0].plot(sub["length"], sub["topk_us"], marker="o", label=f"top-k, keep {r:.0%}")
            axes[1].plot(sub["length"], sub["ratio_topk_over_threshold"], marker="o", label=f"keep {r:.0%}")
        thr = rows.groupby("length")["threshold_us"].median()
        axes[0].plot(thr.index, thr.values, color="black", ls="--", marker="s", label="threshold")
        axes[0].set_yscale("log")
        axes[0].set_ylabel("selection latency (µs, batch 32)")
        axes[1].set_ylabel("top-k / threshold latency")
        for ax in axes:
            ax.set_xlabel("sequence length (tokens)")
            ax.set_xscale("log", base=2)
            ax.legend(fontsize=8)
        fig.tight_layout()
        return _save(fig, figures_dir, stem)


def bucket_speedup_figure(table: pd.DataFrame, figures_dir: str | os.PathLike, stem: str) -> list[str]:
    tasks = list(dict.fromkeys(table["task"]))
    with rc_context(STYLE):
        fig, axes = _new_figure(len(tasks), (4.8, 3.6))
        for ax, task in zip(axes, tasks):
            _grouped_bars(ax, table[table["task"] == task], "bucket", "method", "speedup", "FLOPs speedup (× dense)")
            ax.axhline(1.0, color="black", lw=0.8)
            ax.set_title(task)
            ax.set_xlabel("eval length bucket (tokens)")
        axes[0].legend()
        fig.tight_layout()
        return _save(fig, figures_dir, stem)


def wallclock_figure(table: pd.DataFrame, figures_dir: str | os.PathLike, stem: str) -> list[str]:
    """Measured vs FLOPs speedup: each method in its look, one marker fill per
    batch size, the timing's 95% interval as vertical error bars."""
    protocols = list(dict.fromkeys(table["protocol"]))
    sizes = sorted(int(c[len("wall_bs"):]) for c in table.columns if c.startswith("wall_bs") and c[7:].isdigit())
    looks = identities(table["method"], bases_from(table))
    several_tasks = table["task"].nunique() > 1
    with rc_context(STYLE):
        fig, axes = _new_figure(len(protocols), (5.0, 4.0))
        for ax, p in zip(axes, protocols):
            sub = table[table["protocol"] == p]
            handles = {}
            faint = False
            for method, pts in sub.groupby("method", sort=False):
                look = looks[method]
                for i, b in enumerate(sizes):
                    col = f"wall_bs{b}"
                    missed = _missed(pts, col)
                    # the fill says the batch size here, so a variant's marker is filled too (its shape differs);
                    # a timing that missed its target is drawn faint
                    for sel, alpha in ((~missed, 1.0), (missed, UNRELIABLE_ALPHA)):
                        if not sel.any():
                            continue
                        errors = _wall_errors(pts[sel], col)
                        ax.errorbar(pts["flops_speedup"][sel], pts[col][sel], yerr=errors, capsize=2,
                                    ecolor=look.color, elinewidth=0.8, alpha=alpha,
                                    **look.line(linestyle="none", markerfacecolor=look.color,
                                                fillstyle=_fill(i, len(sizes))))
                    faint |= bool(missed.any())
                handles[method] = _proxy(look, markerfacecolor=look.color)  # filled: as at the largest batch
            if sizes and several_tasks:
                for _, r in sub.iterrows():
                    ax.annotate(str(r["task"]), (r["flops_speedup"], r[f"wall_bs{sizes[-1]}"]),
                                fontsize=7, xytext=(3, 3), textcoords="offset points")
            hi = float(np.nanmax([sub["flops_speedup"].max(), *(sub[f"wall_bs{b}"].max() for b in sizes), 1.0]))
            (diag,) = ax.plot([0, hi * 1.1], [0, hi * 1.1], color="black", lw=0.8, ls=":", label="wall = FLOPs")
            ax.set_xlabel("FLOPs speedup (× dense)")
            ax.set_ylabel("measured throughput speedup (× dense)")
            ax.set_title(f"{p} padding protocol")
            extra = ([_proxy(looks[next(iter(handles))], alpha=UNRELIABLE_ALPHA, color="gray", linestyle="none",
                             markerfacecolor="gray", markeredgecolor="gray")] if faint and handles else [])
            ax.legend([*handles.values(), *_size_handles(sizes), diag, *extra],
                      [*handles.keys(), *(f"batch {b}" for b in sizes), "wall = FLOPs",
                       *(["faint: timing missed its target"] if extra else [])], fontsize=8)
        fig.tight_layout()
        return _save(fig, figures_dir, stem)


def sparsity_curve_figure(table: pd.DataFrame, figures_dir: str | os.PathLike, stem: str) -> list[str]:
    """One row of two panels per task: metric vs sparsity, metric vs speedup
    (FLOPs: the series' look; wall-clock: its colour and marker, dotted, one
    marker fill per batch size, horizontal error bars where the table carries
    the timing's interval as `wall_bs<b>_low/_high`; `sparsity_curve`'s table
    keeps only the median today, so none are drawn)."""
    tasks = list(dict.fromkeys(table["task"]))
    walls = [c for c in table.columns if c.startswith("wall_bs") and c[7:].isdigit() and table[c].notna().any()]
    key = "series" if "series" in table.columns else "method"
    looks = identities(table.loc[table["method"] != DENSE, key], bases_from(table, key))
    with rc_context(STYLE):
        fig, axes = _new_figure(2 * len(tasks), (4.8, 3.8), max_cols=2)  # one row per task
        for i, task in enumerate(tasks):
            sub = table[table["task"] == task]
            dense = sub[sub["method"] == DENSE]
            left, right = axes[2 * i], axes[2 * i + 1]
            for method, pts in sub[sub["method"] != DENSE].groupby(key, sort=False):
                pts = pts.sort_values("sparsity")
                look = looks[method]
                left.plot(pts["sparsity"], pts["value"], **look.line(label=method))
                right.plot(pts["flops_speedup"], pts["value"], **look.line(label=f"{method} (FLOPs)"))
                for j, c in enumerate(walls):
                    right.errorbar(pts[c], pts["value"], xerr=_wall_errors(pts, c), capsize=2, ecolor=look.color,
                                   elinewidth=0.8, label=f"{method} (wall, batch {c[7:]})",
                                   **look.line(linestyle=":", markerfacecolor=look.color,
                                               fillstyle=_fill(j, len(walls))))
            for ax in (left, right):
                if len(dense):  # a line without a band: records carry no interval on their metrics yet
                    ax.axhline(float(dense["value"].iloc[0]), color="black", lw=0.8, ls=":", label="dense")
                ax.set_ylabel(f"{sub['metric'].iloc[0]} (x100)")
                ax.set_title(f"{task}, {sub['protocol'].iloc[0]} padding")
            left.set_xlabel("sparsity (encoder parameters removed)")
            right.set_xlabel("speedup over dense (×)")
            right.legend(fontsize=7)
        fig.tight_layout()
        return _save(fig, figures_dir, stem)


def tradeoff_figure(table: pd.DataFrame, figures_dir: str | os.PathLike, stem: str) -> list[str]:
    """One panel per task: each series' points (sorted along x) joined by a
    line (a series is a method, or a method at one value of a knob), in its
    look. No error bars: FLOPs and metrics carry no interval."""
    x = "relative_flops" if table.attrs.get("x") == "relative_flops" else "flops_speedup"
    shade = table.attrs.get("shade")
    tasks = list(dict.fromkeys(table["task"]))
    key = "series" if "series" in table.columns else "method"
    looks = identities(table.loc[table["method"] != DENSE, key], bases_from(table, key))
    with rc_context(STYLE):
        fig, axes = _new_figure(len(tasks), (5.2, 4.0), max_cols=2)
        for ax, task in zip(axes, tasks):
            sub = table[table["task"] == task]
            dense = sub[sub["method"] == DENSE]
            for method, pts in sub[sub["method"] != DENSE].groupby(key, sort=False):
                pts = pts.sort_values(x)
                ax.plot(pts[x], pts["value"], **looks[method].line(label=method))
            if len(dense):  # a line without a band: records carry no interval on their metrics yet
                ax.axhline(float(dense["value"].iloc[0]), color="black", lw=0.8, ls=":", label="dense")
            if shade:
                ax.axvspan(float(shade[0]), float(shade[1]), color="grey", alpha=0.12, label=f"{shade[0]}-{shade[1]}x")
            ax.set_xlabel("remaining FLOPs (fraction of dense)" if x == "relative_flops" else "FLOPs speedup (× dense)")
            ax.set_ylabel(f"{sub['metric'].iloc[0]} (x100)")
            ax.set_title(f"{task}, {sub['protocol'].iloc[0]} padding")
            ax.legend(fontsize=7)
        fig.tight_layout()
        return _save(fig, figures_dir, stem)


def placeholder_figure(reason: str, figures_dir: str | os.PathLike, stem: str) -> list[str]:
    """A figure that says why an experiment has nothing to plot."""
    with rc_context(STYLE):
        fig, (ax,) = _new_figure(1, (6.0, 2.0))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{stem}: no data\n{reason}", ha="center", va="center", wrap=True)
        return _save(fig, figures_dir, stem)
