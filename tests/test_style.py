"""Figures: one look (colour, marker) per method in every figure; variants share their base's hue.

Built from fixture records of every series the default profile draws (each
registered plugin and each of config/default.yaml's variants, with the
`base_method` the evaluate job writes), and checked on the matplotlib objects
the figure functions draw, captured before they are saved.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.colors import to_hex

from harness.config import load_config
from harness.plugin.registry import method_names
from harness.report import figures, paper_figures
from harness.report.load import load_records
from harness.report.paper_tables import wallclock_table
from harness.report.style import DENSE_IDENTITY, base_of, identities
from harness.run.plan import base_method

from .records import record

DENSE = "dense"


def _default_series() -> dict[str, str]:
    """Every non-dense series of the default profile's trade-off figure -> its base method."""
    cfg = load_config("default")
    names = [m for m in method_names() if m != DENSE] + list(cfg.get("variants", {}))
    return {n: base_method(cfg, n) for n in names}


SERIES = _default_series()


def _write_records(root: Path, series: dict[str, str], tasks=("mr", "sst2")) -> None:
    def put(rec: dict, base: str) -> None:
        rec["base_method"] = base
        path = root / "records" / rec["task"] / rec["method"] / rec["operating_point"] / f"{rec['protocol']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))

    for task in tasks:
        for protocol in ("batch", "none"):
            put(record(task, DENSE, "default", protocol, metrics={"accuracy": 0.8},
                       validation_metrics={"accuracy": 0.8}, flops=1e9, baseline_flops=1e9, wall={1: 1.0, 32: 1.0}),
                DENSE)
            for i, (name, base) in enumerate(sorted(series.items())):
                for j, rel in enumerate((0.4, 0.7)):
                    acc = 0.8 - 0.01 * (i % 5) - 0.02 * (1 - rel)
                    put(record(task, name, f"p{j}", protocol, metrics={"accuracy": acc},
                               validation_metrics={"accuracy": acc}, flops=rel * 1e9, baseline_flops=1e9,
                               knobs={"k": rel}, wall={1: 1.1 / rel, 32: 1.3 / rel}), base)


@pytest.fixture()
def frame(tmp_path: Path) -> pd.DataFrame:
    _write_records(tmp_path / "results", SERIES)
    return load_records(tmp_path / "results")


@pytest.fixture()
def captured(monkeypatch) -> list:
    """The figures the figure functions would save, kept open for inspection."""
    figs: list = []

    def keep(fig, figures_dir, stem):
        figs.append(fig)
        return [stem]

    monkeypatch.setattr(figures, "_save", keep)
    monkeypatch.setattr(paper_figures, "_save", keep)
    return figs


def _looks(fig) -> dict[str, tuple[str, str, str]]:
    """label -> (colour, marker, line style) of every labelled line with a marker in a figure."""
    out: dict[str, tuple[str, str, str]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            label = line.get_label()
            if label.startswith("_") or line.get_marker() in ("None", "none", None, ""):
                continue
            look = (to_hex(line.get_color()), str(line.get_marker()), str(line.get_linestyle()))
            assert out.setdefault(label, look) == look, f"{label} drawn in two looks in one figure"
    return out


def _legend_looks(fig) -> dict[str, tuple[str, str, str]]:
    """label -> (colour, marker, line style) of every legend entry with a marker."""
    out: dict[str, tuple[str, str, str]] = {}
    for ax in fig.axes:
        legend = ax.get_legend()
        for handle, text in zip(legend.legend_handles if legend else (), legend.get_texts() if legend else ()):
            if hasattr(handle, "get_marker") and handle.get_marker() not in ("None", "none", None, ""):
                out[text.get_text()] = (to_hex(handle.get_color()), str(handle.get_marker()),
                                        str(handle.get_linestyle()))
    return out


def _hue(name: str) -> str:
    return to_hex(identities([name], SERIES)[name].color)


def test_default_tradeoff_series_are_told_apart(frame, captured) -> None:
    figures.tradeoff_curves(frame, "unused", "none")
    looks = _looks(captured[0])
    assert set(looks) == set(SERIES)  # all 16 series, each labelled once
    pairs = {name: look[:2] for name, look in looks.items()}
    clashes = [(a, b) for a in pairs for b in pairs if a < b and pairs[a] == pairs[b]]
    assert not clashes, f"series with one colour and marker: {clashes}"
    # the four pairs the 10-colour cycle drew alike
    for a, b in (("cofi", "ltp_manual"), ("fastbert", "ltp_short"), ("infor_coef", "magic_pyramid"),
                 ("infor_coef_dynamic", "power_bert")):
        assert looks[a][0] != looks[b][0]


def test_variants_share_their_base_hue_and_differ_from_it(frame, captured) -> None:
    figures.tradeoff_curves(frame, "unused", "none")
    looks = _looks(captured[0])
    variants = {n: b for n, b in SERIES.items() if n != b}
    assert variants  # the default profile has variants
    for name, base in variants.items():
        assert looks[name][0] == looks[base][0], name
        assert looks[name][1:] != looks[base][1:], name
    bases = {b for b in SERIES.values()}
    hues = {looks[b][0] for b in bases}
    assert len(hues) == len(bases)  # every base method its own hue
    assert to_hex(DENSE_IDENTITY.color) not in hues


def test_a_method_looks_the_same_in_every_figure_and_order(frame, captured) -> None:
    figures.tradeoff_curves(frame, "unused", "none")
    shuffled = frame.sample(frac=1.0, random_state=3)
    figures.tradeoff_curves(shuffled, "unused", "batch", methods=sorted(SERIES, reverse=True)[:7])
    # the paper figures: the method_tradeoff figure, its series in another order, and the wall-clock figure
    rows = [{"task": r.task, "method": r.method, "base_method": r.base_method, "series": r.method, "protocol": "batch",
             "metric": r.metric, "value": 100 * r.primary_value, "flops_speedup": r.flops_speedup,
             "relative_flops": r.relative_flops} for r in shuffled[shuffled.protocol == "batch"].itertuples()]
    paper_figures.tradeoff_figure(pd.DataFrame(rows), "unused", "t")
    paper_figures.wallclock_figure(wallclock_table(shuffled, list(reversed(sorted(SERIES))), 2.0), "unused", "w")
    first, second, third = (_looks(f) for f in captured[:3])
    fourth = _legend_looks(captured[3])
    assert len(second) == 7
    for other in (second, third):
        for name, look in other.items():
            assert look == first[name], name
    # wall-clock: batch sizes are marker fills, so compare colour and marker only
    assert set(SERIES) <= set(fourth)
    for name in SERIES:
        assert fourth[name][:2] == first[name][:2], name


def test_a_new_plugin_gets_a_stable_look_without_editing_the_style() -> None:
    one = identities(["zz_new", "ltp", "zz_new_short"], {"zz_new_short": "zz_new"})
    two = identities(["zz_new_short", "cofi", "zz_new", "spatten"], {"zz_new_short": "zz_new"})
    assert one["zz_new"] == two["zz_new"] and one["zz_new_short"] == two["zz_new_short"]
    assert one["zz_new_short"].color == one["zz_new"].color
    assert one["zz_new"].color not in {one["ltp"].color, two["cofi"].color, two["spatten"].color}
    # many unknown bases in one figure: still no two alike
    many = identities([f"plugin{i}" for i in range(30)])
    assert len({(i.color, i.marker) for i in many.values()}) == 30


def test_base_of_prefers_records_then_registered_plugins() -> None:
    assert base_of("infor_coef_dynamic", {"infor_coef_dynamic": "infor_coef"}) == "infor_coef"
    assert base_of("ltp_short") == "ltp"  # no records at hand: the registered plugin it extends
    assert base_of("ltp_manual") == "ltp_manual"  # a plugin of its own
    assert base_of("infor_coef (sparsity=0.6)", {"infor_coef (sparsity=0.6)": "infor_coef"}) == "infor_coef"
    assert _hue("infor_coef_skim") == _hue("infor_coef")


def test_tradeoff_points_carry_their_intervals_and_dense_its_band(frame, captured) -> None:
    """Every point of the trade-off figure has its record's 95% bootstrap interval as an error bar, and
    dense's interval is a band across the panel."""
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Polygon, Rectangle

    figures.tradeoff_curves(frame, "unused", "none")
    ax = captured[0].axes[0]
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    n_points = int((frame[(frame["protocol"] == "none") & (frame["method"] != "dense")]["task"] == "mr").sum())
    assert sum(len(c.get_segments()) for c in bars) >= n_points  # one bar per point (the front's drawn twice)
    dense = frame[(frame["protocol"] == "none") & (frame["method"] == "dense")].iloc[0]
    low, high = 100 * dense["metric_accuracy_low"], 100 * dense["metric_accuracy_high"]
    ys = [[round(p.get_y(), 6), round(p.get_y() + p.get_height(), 6)] if isinstance(p, Rectangle)
          else sorted({round(float(y), 6) for _, y in p.get_xy()}) for p in ax.patches
          if isinstance(p, (Polygon, Rectangle))]
    assert [round(low, 6), round(high, 6)] in ys, ys
