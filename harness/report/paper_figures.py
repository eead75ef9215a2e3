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
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.ticker import MaxNLocator

from harness.report.figures import STYLE, _new_figure, _save


def _grouped_bars(ax, table: pd.DataFrame, group: str, series: str, value: str, ylabel: str) -> None:
    groups = list(dict.fromkeys(table[group]))
    names = list(dict.fromkeys(table[series]))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(groups))
    for i, name in enumerate(names):
        sub = table[table[series] == name].set_index(group)
        ys = [float(sub[value].get(g, np.nan)) if g in sub.index else np.nan for g in groups]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, ys, width, label=name)
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
    """traj columns: task, method, length, tokens_per_layer (list)."""
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
    protocols = list(dict.fromkeys(table["protocol"]))
    sizes = sorted(int(c[len("wall_bs"):]) for c in table.columns if c.startswith("wall_bs") and c[7:].isdigit())
    with rc_context(STYLE):
        fig, axes = _new_figure(len(protocols), (5.0, 4.0))
        for ax, p in zip(axes, protocols):
            sub = table[table["protocol"] == p]
            for b, marker in zip(sizes, "os^Dv"):
                err = [sub[f"wall_bs{b}"] - sub[f"wall_bs{b}_low"], sub[f"wall_bs{b}_high"] - sub[f"wall_bs{b}"]]
                ax.errorbar(sub["flops_speedup"], sub[f"wall_bs{b}"], yerr=err, fmt=marker, capsize=2,
                            label=f"batch {b}")
            if sizes:
                for _, r in sub.iterrows():
                    ax.annotate(f"{r['method']} ({r['task']})", (r["flops_speedup"], r[f"wall_bs{sizes[-1]}"]),
                                fontsize=7, xytext=(3, 3), textcoords="offset points")
            hi = float(np.nanmax([sub["flops_speedup"].max(), *(sub[f"wall_bs{b}"].max() for b in sizes), 1.0]))
            ax.plot([0, hi * 1.1], [0, hi * 1.1], color="black", lw=0.8, ls=":", label="wall = FLOPs")
            ax.set_xlabel("FLOPs speedup (× dense)")
            ax.set_ylabel("measured throughput speedup (× dense)")
            ax.set_title(f"{p} padding protocol")
            ax.legend(fontsize=8)
        fig.tight_layout()
        return _save(fig, figures_dir, stem)


def sparsity_curve_figure(table: pd.DataFrame, figures_dir: str | os.PathLike, stem: str) -> list[str]:
    """One row of two panels per task: metric vs sparsity, metric vs speedup."""
    tasks = list(dict.fromkeys(table["task"]))
    walls = [c for c in table.columns if c.startswith("wall_bs") and table[c].notna().any()]
    with rc_context(STYLE):
        fig, axes = _new_figure(2 * len(tasks), (4.8, 3.8), max_cols=2)  # one row per task
        for i, task in enumerate(tasks):
            sub = table[table["task"] == task]
            dense = sub[sub["method"] == "dense"]
            left, right = axes[2 * i], axes[2 * i + 1]
            key = "series" if "series" in sub.columns else "method"
            for method, pts in sub[sub["method"] != "dense"].groupby(key, sort=False):
                pts = pts.sort_values("sparsity")
                left.plot(pts["sparsity"], pts["value"], "o-", label=method)
                right.plot(pts["flops_speedup"], pts["value"], "o-", label=f"{method} (FLOPs)")
                for c, marker in zip(walls, "s^Dv"):
                    right.plot(pts[c], pts["value"], marker + "--", label=f"{method} (wall, batch {c[7:]})")
            for ax in (left, right):
                if len(dense):
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
    line (a series is a method, or a method at one value of a knob)."""
    x = "relative_flops" if table.attrs.get("x") == "relative_flops" else "flops_speedup"
    shade = table.attrs.get("shade")
    tasks = list(dict.fromkeys(table["task"]))
    with rc_context(STYLE):
        fig, axes = _new_figure(len(tasks), (5.2, 4.0), max_cols=2)
        for ax, task in zip(axes, tasks):
            sub = table[table["task"] == task]
            dense = sub[sub["method"] == "dense"]
            key = "series" if "series" in sub.columns else "method"
            for method, pts in sub[sub["method"] != "dense"].groupby(key, sort=False):
                pts = pts.sort_values(x)
                ax.plot(pts[x], pts["value"], "o-", label=method)
            if len(dense):
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
