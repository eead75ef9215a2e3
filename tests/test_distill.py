"""The distilled students (methods/distill.py): DistilBERT's layer choice, TinyBERT's layer map, the
narrow student's slicing, the intermediate loss, and a student trained end to end on the smoke model."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from harness.plugin.registry import get_method

from .conftest import random_batch

distill = get_method("distill")
mod = __import__(type(distill).__module__, fromlist=["x"])


def test_initial_layers_follow_distilbert():
    assert mod.initial_layers(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's extraction script
    assert mod.initial_layers(6, 4) == [0, 2, 3, 5]
    assert mod.initial_layers(6, 3) == [0, 3, 5]
    assert mod.initial_layers(6, 2) == [0, 5]
    assert mod.initial_layers(6, 1) == [0]
    assert mod.initial_layers(6, 6) == list(range(6))


def test_narrow_student_keeps_the_strongest_units(tiny_model):
    student, how = mod.build_student(tiny_model, 1, 0.5)
    arch, dense = student.arch(), tiny_model.arch()
    assert len(student.layers) == 1 and how["teacher_layers"] == [0]
    assert arch.hidden == dense.hidden // 2 and arch.heads == (dense.heads[0] // 2,)
    assert arch.ffn == (dense.ffn[0] // 2,)
    strength = mod.head_strength(tiny_model.layers[0])
    assert sorted(how["teacher_heads"][0]) == sorted(torch.argsort(strength, descending=True)[:arch.heads[0]].tolist())
    # the slices are the teacher's own weights
    kept = torch.tensor(how["teacher_hidden"])
    assert torch.equal(student.embeddings.word_embeddings.weight, tiny_model.embeddings.word_embeddings.weight[:, kept])


def test_full_width_student_is_the_teacher_at_full_depth(tiny_model):
    student, _ = mod.build_student(tiny_model, len(tiny_model.layers), 1.0)
    ids, mask = random_batch(3, 20, lengths=[20, 9, 14], seed=1)
    with torch.no_grad():
        assert torch.equal(student(ids, mask).logits, tiny_model(ids, mask).logits)


def test_intermediate_loss_is_zero_against_itself(tiny_model):
    teacher = copy.deepcopy(tiny_model).eval()
    student, how = mod.build_student(teacher, len(teacher.layers), 1.0)
    teacher.policy, student.policy = mod.Recorder(always=True), mod.Recorder(always=True)
    s = mod.Settings()
    loss = mod.Intermediate(teacher, student, how, s)
    ids, mask = random_batch(2, 16, lengths=[16, 7], seed=2)
    batch = SimpleNamespace(inputs=(ids, mask, torch.zeros_like(ids)), attention_mask=mask)
    with torch.no_grad():
        assert loss(student.eval()(ids, mask), batch).item() == pytest.approx(0.0, abs=1e-10)
        with torch.no_grad():
            student.layers[0].query.weight.mul_(3.0)  # other attention maps, other hidden states
        assert loss(student(ids, mask), batch).item() > 1e-6  # (the tiny random model attends almost uniformly)


def test_bad_shapes_are_one_clear_error(tiny_model):
    from harness.errors import HarnessError

    n = len(tiny_model.layers)
    with pytest.raises(HarnessError, match=f"1 to {n} layers"):
        mod.build_student(tiny_model, n + 1)
    with pytest.raises(HarnessError, match="narrow_width"):
        distill.check("distill", mod.Settings(narrow_width=1.5), None)


def test_students_train_and_yield_their_points(smoke_context):
    ctx = smoke_context("distill", ["methods_config.distill={depths: [1], narrow_depths: [1], "
                                    "intermediate_epochs: 1, prediction_epochs: 1}"])
    log = distill.train(ctx)
    points = list(distill.operating_points(ctx))
    assert [p.name for p in points] == ["layers=1", "layers=1_width=0.5"]
    dense = ctx.load_model(method="dense")
    for p in points:
        assert len(p.model.layers) == 1
        assert p.model.policy.describe()["kind"] == "distilled_student"
        assert 0.0 < p.notes["kept_fraction"] < 1.0
    assert points[1].model.arch().hidden == dense.arch().hidden // 2
    first = log["points"]["layers=1"]
    assert first["intermediate"]["steps"] > 0 and first["prediction"]["steps"] > 0


def test_selected_points_chooses_the_student_of_the_asked_shape(tmp_path):
    """Magic Pyramid Table 2's DistilBERT column: `knobs` restricts the choice to one student shape."""
    import json

    from harness.report.load import load_records
    from harness.report.paper_tables import selected_points_table

    from .records import record

    def write(method, op, flops, acc, knobs=None):
        path = tmp_path / "records" / "mr" / method / "seed0" / op / "none.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record("mr", method, op, "none", metrics={"accuracy": acc},
                                          validation_metrics={"accuracy": acc}, flops=flops, baseline_flops=4.0,
                                          knobs=knobs)))

    write("dense", "dense", 4.0, 0.80)
    write("distill", "layers=2", 1.0, 0.80, {"layers": 2, "width": 1.0})
    write("distill", "layers=3", 2.0, 0.80, {"layers": 3, "width": 1.0})
    df = load_records(tmp_path)
    assert selected_points_table(df, ["distill"], protocols=("none",)).iloc[0]["operating_point"] == "layers=2"
    table = selected_points_table(df, ["distill"], protocols=("none",), knobs={"distill": {"layers": 3, "width": 1.0}})
    assert list(table["operating_point"]) == ["layers=3"]
