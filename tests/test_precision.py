"""Every registered method's inference path at each lower precision (issue 32's precision axis): the
method's model, policy included, converted by `harness.model.precision` runs on the tiny model, its own
decisions (scores, thresholds, gates, exits) taken at that precision; the analytic FLOPs still equal
FlopCounterMode's count of what ran (torchao's int8 GEMM included); two runs agree bit for bit. Methods
come from the registry; no list here."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import pytest
import torch

from harness.measure.flop_reference import count_flops
from harness.measure.flops import trace_flops
from harness.model.precision import at_precision, unavailable
from harness.plugin.registry import get_method, method_names

from .conftest import random_batch

LENGTHS = [57, 12, 33, 40]


def _batch(seed: int):
    ids, mask = random_batch(len(LENGTHS), max(LENGTHS), lengths=LENGTHS, seed=seed)
    return SimpleNamespace(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("name", method_names())
def test_every_method_runs_at_lower_precision_with_exact_flops_and_determinism(name, precision, tiny_model):
    if unavailable(precision, "cpu"):
        pytest.skip(unavailable(precision, "cpu"))
    fp32 = get_method(name).demo_model(tiny_model).eval()
    model, notes = at_precision(fp32, precision, "cpu", calibration=[_batch(7)])
    assert notes["precision"] == precision
    if precision == "bf16":
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    else:  # every Linear's weight is torchao's int8 tensor; the fp32 model is left as it was
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight.numel()]
        assert linears and all(type(m.weight).__name__ == "Int8Tensor" for m in linears)
        assert all(p.dtype == torch.float32 for p in fp32.parameters())
        # the calibration batch ran every Linear the demo model has (at one rank each): all static
        assert notes["linears"] == len(linears) and notes["dynamic_activation_scales"] == 0, notes["dynamic_linears"]
    b = _batch(3)
    with torch.no_grad():
        measured = count_flops(lambda: model(b.input_ids, b.attention_mask))
        first, second = model(b.input_ids, b.attention_mask), model(b.input_ids, b.attention_mask)
        reference = fp32(b.input_ids, b.attention_mask)
    assert torch.isfinite(first.logits.float()).all()
    analytic = trace_flops(first.trace, "batch").sum()
    assert abs(analytic - measured) / measured < 1e-3, (name, analytic, measured)
    assert torch.equal(first.logits, second.logits)
    for field in ("n_attn", "n_ffn", "exit_layer"):
        assert (getattr(first.trace, field) == getattr(second.trace, field)).all(), field
    if precision == "int8" and (first.trace.n_attn == reference.trace.n_attn).all():
        # the same tokens kept: int8 logits stay near fp32's (a quantized model, not a different one)
        scale = reference.logits.abs().max().item() + 1e-6
        assert (first.logits.float() - reference.logits).abs().max().item() < 0.25 * scale + 0.05


def test_bops_count_linear_layers_at_their_width_and_the_rest_at_full_width():
    from harness.measure.flops import attention_product_macs, bops
    from harness.model.precision import bits
    from harness.model.trace import ArchShape

    macs, products, policy = np.array([1000.0]), np.array([100.0]), np.array([50.0])
    assert bops(macs, products, policy, bits("fp32"))[0] == 1000 * 32 * 32
    assert bops(macs, products, policy, bits("bf16"))[0] == 1000 * 16 * 16
    assert bops(macs, products, policy, bits("int8"))[0] == 850 * 8 * 8 + 150 * 32 * 32
    arch = ArchShape(hidden=8, head_dim=4, heads=(2, 0), ffn=(16, 16), num_labels=2, pooler=(8, 8),
                     classifier_in=8)
    # QK^T and AV: 2 n^2 x heads x head_dim per layer; a layer with no heads has none
    assert attention_product_macs(np.array([[5, 5]]), arch)[0] == 2 * 25 * 2 * 4


def test_a_conversion_copies_and_a_precision_the_device_cannot_run_says_why(tiny_model, monkeypatch):
    from harness.model import precision as prec

    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    monkeypatch.setattr(prec, "_cpu_has_bf16", lambda: True)  # a conversion, whether or not this CPU runs it natively
    converted, _ = prec.at_precision(tiny_model, "bf16", "cpu")
    assert converted is not tiny_model and all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())
    assert prec.at_precision(tiny_model, "fp32", "cpu")[0] is tiny_model
    assert "unknown precision" in prec.unavailable("int4", "cpu")
    monkeypatch.setattr(prec, "_cpu_has_bf16", lambda: False)
    assert "no bfloat16 matrix units" in prec.unavailable("bf16", "cpu")
    with pytest.raises(RuntimeError, match="cannot run on cpu"):
        prec.at_precision(tiny_model, "bf16", "cpu")
    monkeypatch.setattr(prec.importlib.util, "find_spec", lambda name: None)
    assert "torchao is not installed" in prec.unavailable("int8", "cpu")


def test_the_kernels_a_pass_ran_are_observed(tiny_model):
    from harness.measure.kernels import observed_kernels

    b = _batch(1)
    for precision, op in (("fp32", "aten::addmm"), ("int8", "aten::_int_mm")):
        if unavailable(precision, "cpu"):
            continue
        model, _ = at_precision(tiny_model, precision, "cpu", calibration=[b])
        seen = observed_kernels(lambda: model(b.input_ids, b.attention_mask, trace=False), "cpu")
        assert op in seen["operators"], (precision, seen)
        if precision == "int8" and torch.backends.mkldnn.is_available():
            assert any("s8" in k for k in seen["onednn"]), seen  # oneDNN's int8 GEMM ran
    if not unavailable("bf16", "cpu"):
        model, _ = at_precision(tiny_model, "bf16", "cpu")
        seen = observed_kernels(lambda: model(b.input_ids, b.attention_mask, trace=False), "cpu")
        assert any(k.startswith("matmul") and "bf16" in k for k in seen["onednn"]), seen


def test_interleaved_timing_rotates_the_order_and_pairs_any_two(tiny_model):
    from harness.data.encoding import Encoded
    from harness.measure.timing import TimingSpec, time_interleaved

    calls = []

    class Named(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, *args, **kwargs):
            calls.append(self.name)

    enc = Encoded(input_ids=[[1, 5, 6, 2]] * 4, token_type_ids=[[0] * 4] * 4, labels=np.zeros(4, dtype=np.int64))
    spec = TimingSpec(threads=1, min_rounds=3, max_rounds=3, min_time=0.0)
    t = time_interleaved({n: Named(n) for n in "abc"}, enc, "batch", 8, 4, spec, "cpu", [("a", "b")])
    assert t.number == 1 and all(len(v) == 3 for v in t.seconds.values())
    rounds = calls[-9:]  # after the warm-up and the pass that sets the repeats
    assert rounds == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    pair = t.pair("a", "c")
    assert pair.point_s == t.seconds["a"] and pair.dense_s == t.seconds["c"] and pair.rounds == 3


def test_the_selection_rule_is_one_definition():
    from harness.pareto import fewest_within

    assert fewest_within([3.0, 1.0, 2.0], [0.90, 0.85, 0.895], 0.90, 0.01) == (2, True)
    assert fewest_within([3.0, 1.0], [0.80, float("nan")], 0.90, 0.01) == (0, False)
    assert fewest_within([], [], 0.9, 0.01) == (None, False)
    import pandas as pd

    from harness.report.point_choice import fastest_of

    rows = pd.DataFrame({"flops_per_example": [3.0, 1.0], "val_primary_value": [0.9, 0.85]})
    chosen, met = fastest_of(rows, 0.9, 0.01)
    assert chosen["flops_per_example"] == 3.0 and met
    # a knob filter that keeps nothing (boolean indexing with an empty list leaves no columns either)
    assert fastest_of(rows[[]], 0.9, 0.01) == (None, False)


def test_the_evaluate_job_writes_every_precision_and_times_the_selected_point(tmp_path):
    """The smoke profile's LTP on the tiny model: every point at each precision the CPU runs, under the
    precision protocols; the selected point (and dense's) timed at every precision against dense at every
    precision, its records naming the fastest dense and the kernels that ran; BOPs at each width."""
    import json

    from harness.config import load_config
    from harness.run.jobs import evaluate_job, train_job

    cfg = load_config("smoke", [f"results_dir={tmp_path}/r", f"figures_dir={tmp_path}/f", f"work_dir={tmp_path}/w",
                                "data_dir=", "eval.protocols=[batch, none]", "eval.precision_protocols=[batch, none]",
                                "timing.protocols=[batch, none]", "timing.precision_protocols=[batch]",
                                "timing.batch_sizes=[1]"])
    ran = [p for p in ("fp32", "bf16", "int8") if not unavailable(p, "cpu")]
    for method in ("dense", "ltp"):
        train_job(cfg, "mr", method)
        evaluate_job(cfg, "mr", method)
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "r" / "records").rglob("*.json"))]
    ltp = [r for r in records if r["method"] == "ltp"]
    points = {r["operating_point"] for r in ltp}
    assert len(points) == 2  # the smoke profile's two lambdas
    assert {(r["operating_point"], r["protocol"], r["precision"]) for r in ltp} == {
        (o, p, q) for o in points for p in ("batch", "none") for q in ran}
    timed = [r for r in ltp if r["wallclock_speedup_vs_fastest_dense"] is not None]
    assert len({r["operating_point"] for r in timed}) == 1  # one selected point
    assert {(r["protocol"], r["precision"]) for r in timed} == {("batch", q) for q in ran}
    for r in timed:
        for bs in ("1", "32"):
            t = r["timing"]["by_batch_size"][bs]
            assert set(t["vs_dense_at"]) == set(ran) and t["fastest_dense"]["precision"] in ran
            assert set(t["dense_validation"]) == set(ran)
        assert r["kernels"]["point"]["operators"] and r["kernels"]["dense"]["operators"]
        if r["precision"] != "fp32":  # its own timing: against dense at its precision
            assert r["timing"]["by_batch_size"]["32"]["speedup"] == r["wallclock_speedup"]
    by = {(r["operating_point"], r["protocol"], r["precision"]): r for r in ltp}
    for (o, p, q), r in by.items():
        width = {"fp32": 32, "bf16": 16, "int8": 8}[q]
        assert r["provenance"]["precision"] == q
        if q != "fp32":  # the same products at a smaller width: fewer BOPs, the same FLOPs
            assert r["flops_per_example"] == by[(o, p, "fp32")]["flops_per_example"]
            assert r["relative_bops"] < by[(o, p, "fp32")]["relative_bops"]
        if q != "int8":
            assert r["relative_bops"] == pytest.approx(r["relative_flops"] * width * width / 1024)
    # untimed protocol `none` at a lower precision: metrics, FLOPs and BOPs, no timing
    untimed = [r for r in ltp if r["protocol"] == "none" and r["precision"] != "fp32"]
    assert untimed and all(r["timing"] is None and r["kernels"] is None for r in untimed)


def test_a_misspelled_method_in_the_precision_settings_is_one_clear_error():
    from harness.config import load_config
    from harness.errors import HarnessError
    from harness.run.plan import check_precision_methods, resolve_methods

    for key in ("precision_methods", "precision_points"):
        cfg = load_config("smoke", [f"eval.{key}=[ltpp]"])
        with pytest.raises(HarnessError, match=rf"eval.{key} names \['ltpp'\], which is not a method or variant"):
            check_precision_methods(cfg, resolve_methods(cfg))
    cfg = load_config("default")
    check_precision_methods(cfg, resolve_methods(cfg))  # [ltp]
