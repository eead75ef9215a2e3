"""Points trained one job each: every method whose points train independently
gives the same model for a point whether it is trained after the others in one
process (`plugin.train`) or alone in its own job (`train_point`, what the
workflow runs side by side on a cluster), from any prior random state.

Methods are discovered from the registry; this file never lists them.
"""
from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from harness.data.tasks import get_task
from harness.errors import HarnessError
from harness.plugin.registry import get_method, method_names
from harness.run import plan
from harness.run.jobs import gather_points_job
from harness.run.points import point_file, point_job
from harness.storage import read_json


def pointwise(cfg) -> list[str]:
    return [n for n in method_names() if plan.point_names(cfg, "mr", n)]


def _state(ctx, file: str) -> dict:
    return ctx.load_model(file).state_dict()


def test_point_methods_are_declared():
    from harness.config import load_config

    cfg = load_config("smoke", ["data_dir="])
    names = pointwise(cfg)
    assert {"dense", "lat", "fastbert"}.isdisjoint(names)  # one model each (LAT: one model, then a search)
    for n in names:
        points = plan.point_names(cfg, "mr", n)
        assert len(points) == len(set(points)) >= 1, (n, points)


@pytest.mark.parametrize("name", [n for n in method_names() if n not in ("dense", "lat", "fastbert")])
def test_a_point_alone_equals_the_point_after_the_others(name, smoke_context, tmp_path):
    together = smoke_context(name)
    names = plan.point_names(together.cfg, "mr", name)
    if not names:
        pytest.skip(f"{name} trains in one job")
    for req in plan.requirements(together.cfg, name):  # e.g. cofi before infor_coef
        if req != "dense":
            get_method(req).train(smoke_context(req))
    get_method(name).train(together)
    manifest = together.read_json("points.json")

    alone = smoke_context(name, [f"work_dir={tmp_path}/alone"])
    for req in plan.requirements(together.cfg, name):
        shutil.copytree(together.model_dir(req), alone.model_dir(req), dirs_exist_ok=True)
    random.seed(7), np.random.seed(7), torch.manual_seed(7)  # whatever ran before in the process
    last = names[-1]
    result = read_json(point_job(alone, last))
    assert result["point"] == last and point_file(alone.model_dir(), last).is_file()
    assert result["entries"] and all(e in manifest for e in result["entries"]), (manifest, result["entries"])
    for entry in result["entries"]:
        if entry.get("file"):  # (ltp_manual without its hard stage saves no model)
            a, b = _state(together, entry["file"]), _state(alone, entry["file"])
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a), (name, entry["file"])


def test_gather_joins_the_points_in_order(smoke_context):
    ctx = smoke_context("transkimmer", ["methods_config.transkimmer={alphas: [0.1, 0.5], epochs: 0.2}"])
    names = plan.point_names(ctx.cfg, "mr", "transkimmer")
    assert names == ["alpha=0.1", "alpha=0.5"]
    with pytest.raises(HarnessError) as err:  # nothing trained yet
        gather_points_job(ctx.cfg, "mr", "transkimmer")
    assert "alpha=0.1, alpha=0.5 are not trained" in str(err.value)
    for n in reversed(names):  # the order jobs finish in does not matter
        point_job(ctx, n)
    done = read_json(gather_points_job(ctx.cfg, "mr", "transkimmer"))
    assert list(done["log"]["points"]) == names and done["trained_as"] == "one job per point"
    assert [e["name"] for e in ctx.read_json("points.json")] == names
    assert len(list(get_method("transkimmer").operating_points(ctx))) == 2


def test_unknown_point_and_gather_of_a_one_job_method(smoke_context):
    ctx = smoke_context("ltp")
    with pytest.raises(HarnessError) as err:
        point_job(ctx, "lambda=123")
    assert "no training point 'lambda=123'" in str(err.value) and "lambda=" in err.value.fix
    with pytest.raises(HarnessError) as err:
        gather_points_job(ctx.cfg, "mr", "fastbert")
    assert "trains in one job" in str(err.value)
    assert plan.point_names(ctx.cfg, "squad", "magic_pyramid") == []  # excluded from span tasks
    assert get_task("squad").head == "span"
