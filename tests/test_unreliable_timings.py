"""Timings that missed their target (issue 31, item 5): flagged in the tables, faint in the figures,
inconclusive in the claims, listed by the report with the command that re-times them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.claim_spec import check_claims
from harness.report.claims import HOLDS, INCONCLUSIVE, judge
from harness.report.load import load_records
from harness.report.paper_tables import wallclock_table
from harness.report.seeds import over_seeds
from harness.report.timings import unreliable_table, wall
from harness.storage import record_path

from .test_experiments import N, _record

ALL = np.ones(N, bool)
LOAD = {"loadavg_1m_before": 2.5, "loadavg_1m_after": 2.7, "other_busy_cores": 1.6, "cores": 2}


def _miss(root, method, op, protocol, size, seed=0):
    """Mark a record's timing at batch `size` as having missed its target, with a busy machine around it."""
    path = record_path(root, "mr", method, op, protocol, seed)
    rec = json.loads(path.read_text())
    t = rec["timing"]["by_batch_size"][str(size)]
    t.update(reliable=False, target=0.05, load=LOAD, speedup_low=0.5 * t["speedup"], speedup_high=2 * t["speedup"])
    path.write_text(json.dumps(rec))


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for p in ("none", "batch"):
        _record(root, "dense", "dense", p, 1.0, ALL, 0.9)
        _record(root, "ltp", "a", p, 0.5, ALL, 0.9, {"lambda": 0.1}, {1: 1.2, 32: 1.8})
    for path in root.rglob("*.json"):  # timings written with the flag: met
        rec = json.loads(path.read_text())
        for t in (rec.get("timing") or {}).get("by_batch_size", {}).values():
            t.update(reliable=True, target=0.05, load=None)
        path.write_text(json.dumps(rec))
    _miss(root, "ltp", "a", "none", 32)
    return root


def test_the_report_lists_each_missed_timing_with_its_load_and_a_command(results):
    records = load_records(results)
    cfg = {"profile": "default", "results_dir": str(results)}
    table = unreliable_table(records, cfg)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["task"], row["method"], row["seed"], row["operating_point"], row["protocol"], row["batch_size"]) == (
        "mr", "ltp", 0, "a", "none", 32)
    assert row["speedup"] == pytest.approx(1.8) and (row["low"], row["high"]) == pytest.approx((0.9, 3.6))
    assert row["half_width"] == pytest.approx(0.75) and "others busy 1.60 of 2 cores" in row["load"]
    assert row["command"] == (f"snakemake --cores 2 --profile profiles/default --force "
                              f"{results}/manifests/mr/ltp/seed0.json && snakemake --cores 2 --profile profiles/default")
    # a record from before the flag is not listed (unknown, not failed)
    assert wall(records[records["method"] == "ltp"].iloc[0], 8).reliable is None


def test_tables_flag_it_and_claims_read_it_as_inconclusive(results):
    df = over_seeds(load_records(results))
    table = wallclock_table(df, ["ltp"], 2.0, ("batch", "none"))
    by = {r["protocol"]: r for _, r in table.iterrows()}
    assert by["none"]["wall_bs32_reliable"] is False and by["none"]["wall_bs1_reliable"] is True
    assert by["batch"]["wall_bs32_reliable"] is True
    rule = {"measure": "speedup_at", "method": "ltp", "knobs": {"lambda": 0.1}, "quantity": "wall", "at_least": 1.0}
    check_claims({"claims": [{"id": "x", "rule": {**rule, "batch_size": 32}}]}, "test")
    verdict, _, reason = judge(df, "mr", {**rule, "batch_size": 32}, results)
    assert verdict == INCONCLUSIVE and "timing at batch 32 under none missed its target" in reason
    assert "re-time it on a quiet machine" in reason
    assert judge(df, "mr", {**rule, "batch_size": 1}, results)[0] == HOLDS  # the met one decides


def test_the_wallclock_figure_draws_missed_timings_faint(results, tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    import harness.report.paper_figures as pf

    df = over_seeds(load_records(results))
    table = wallclock_table(df, ["ltp"], 2.0, ("batch", "none"))
    drawn, original = [], Axes.errorbar

    def spy(self, x, y, *a, **kw):
        drawn.append((list(np.asarray(y, float)), kw.get("alpha")))
        return original(self, x, y, *a, **kw)

    monkeypatch.setattr(Axes, "errorbar", spy)
    assert pf.wallclock_figure(table, tmp_path, "wallclock")
    assert ([1.8], pf.UNRELIABLE_ALPHA) in drawn  # none, batch 32: faint
    assert ([1.8], 1.0) in drawn and ([1.2], 1.0) in drawn  # batch at 32, and batch 1 everywhere
