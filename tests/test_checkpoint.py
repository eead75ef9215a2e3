"""Models saved as safetensors and loaded without pickle (harness.model.checkpoint, JobStore):
every registered method's model comes back with identical logits and traces; the file names
classes by stable names (a method's by its registered name), not by module paths; loading reads
no pickle; a pickled model from an older harness is refused with what to do."""
from __future__ import annotations

import json
import pickle
import types

import pytest
import torch
from safetensors import safe_open

from harness.errors import HarnessError
from harness.model import checkpoint
from harness.plugin.registry import get_method, method_modules, method_names, module_of_method
from harness.run.job_store import JobStore

from .conftest import random_batch

LENGTHS = [31, 9, 20]


def _run(model):
    ids, mask = random_batch(len(LENGTHS), max(LENGTHS), lengths=LENGTHS, seed=5)
    with torch.no_grad():
        return model(ids, mask)


@pytest.mark.parametrize("name", method_names())
def test_every_method_comes_back_identical_without_pickle(name, tiny_model, tmp_path, monkeypatch):
    model = get_method(name).demo_model(tiny_model).eval()
    before = _run(model)
    store = JobStore(tmp_path, "mr", name, 0)
    path = store.save_model(model, "lambda=0.1.pt")
    assert path.name == "lambda=0.1.safetensors" and not list(tmp_path.rglob("*.pt"))

    def no_pickle(*a, **k):
        raise AssertionError("a checkpoint load unpickled something")

    monkeypatch.setattr(pickle, "loads", no_pickle)  # (safetensors never unpickles; this guards the harness's side)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = store.load_model("lambda=0.1.pt", None, "cpu")
    after = _run(loaded)
    assert type(loaded) is type(model) and type(loaded.policy) is type(model.policy)
    assert torch.equal(before.logits, after.logits)
    for field in ("n_attn", "n_ffn", "exit_layer"):
        assert (getattr(before.trace, field) == getattr(after.trace, field)).all(), field
    _same_module(loaded, model)


def _same_module(loaded, model):
    """Everything a record or a resumed run reads of a model: its state (names, values, which buffers are
    saved), parameters' flags, train/eval modes, the policy's description."""
    a, b = loaded.state_dict(), model.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert [(n, p.requires_grad) for n, p in loaded.named_parameters()] == \
           [(n, p.requires_grad) for n, p in model.named_parameters()]
    assert [(n, m.training) for n, m in loaded.named_modules()] == [(n, m.training) for n, m in model.named_modules()]
    assert [n for n, _ in loaded.named_buffers()] == [n for n, _ in model.named_buffers()]
    assert loaded.policy.describe() == model.policy.describe()


@pytest.mark.parametrize("name", [n for n in method_names() if "span" not in get_method(n).cannot_serve])
def test_span_models_come_back_identical(name, tiny_span_model, tmp_path):
    """A span head (no pooler: a None child) under every method that serves spans."""
    model = get_method(name).demo_model(tiny_span_model).eval()
    checkpoint.save_model(model, tmp_path / "m.safetensors", method_modules())
    loaded = checkpoint.load_model(tmp_path / "m.safetensors", module_of_method)
    assert torch.equal(_run(loaded).logits, _run(model).logits)
    _same_module(loaded, model)


class _Odd(torch.nn.Module):
    """What the methods' demo models do not hold: a non-persistent buffer, a None parameter and buffer, a
    module and a weight reached twice, plain attributes of every kind."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = self.a  # the same module twice
        self.c = torch.nn.Linear(3, 3)
        self.c.weight = self.a.weight  # tied weights
        self.register_buffer("scratch", torch.arange(3.0), persistent=False)
        self.register_buffer("empty", None)
        self.register_parameter("absent", None)
        self.view = self.a.weight[0]  # a view into a parameter, held as an attribute
        self.settings = {"k": (1, 2.5, "x"), "nested": {"on": True, "dtype": torch.bfloat16, "shape": torch.Size([2])}}


def test_ties_views_and_odd_attributes_come_back(tmp_path, monkeypatch):
    import harness.model.checkpoint as ck

    monkeypatch.setitem(ck.__dict__, "CORE_MODULES", (*ck.CORE_MODULES, __name__))  # this test's class, as core
    odd = _Odd()
    ck.save_model(odd, tmp_path / "m.safetensors", {})
    back = ck.load_model(tmp_path / "m.safetensors", module_of_method)
    assert back.b is back.a and back.c.weight is back.a.weight
    assert len(list(back.parameters())) == len(list(odd.parameters()))
    assert "scratch" not in back.state_dict() and torch.equal(back.scratch, odd.scratch)
    assert back.empty is None and back.absent is None
    assert torch.equal(back.view, odd.view) and back.settings == odd.settings


def _tree_of(path):
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["tree"]), {k: f.get_tensor(k) for k in f.keys()}


def _rewrite(path, tree, tensors):
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": checkpoint.FORMAT, "tree": json.dumps(tree)})


def test_a_crafted_file_cannot_replace_code(tiny_model, tmp_path):
    """A file may set attributes, never a method, a property, torch's bookkeeping or a dunder, and its
    dtypes are dtypes: nothing in it can make code run."""
    path = tmp_path / "m.safetensors"
    checkpoint.save_model(tiny_model, path, method_modules())
    for name, value in (("forward", 1), ("_forward_pre_hooks", {"dict": {}}), ("__class__", 1),
                        ("after_layer", 1)):
        tree, tensors = _tree_of(path)
        tree["children"]["policy"]["attributes"][name] = value
        _rewrite(tmp_path / "bad.safetensors", tree, tensors)
        with pytest.raises(HarnessError, match="which only code may set"):
            checkpoint.load_model(tmp_path / "bad.safetensors", module_of_method)
    tree, tensors = _tree_of(path)
    tree["children"]["policy"]["attributes"]["x"] = {"dtype": "load"}  # torch.load is not a dtype
    _rewrite(tmp_path / "bad.safetensors", tree, tensors)
    with pytest.raises(HarnessError, match="is not one"):
        checkpoint.load_model(tmp_path / "bad.safetensors", module_of_method)
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.raises(HarnessError, match="could not be read as a model checkpoint"):
        checkpoint.load_model(tmp_path / "cut.safetensors", module_of_method)


def test_the_file_names_classes_by_registered_name_not_by_module(tiny_model, tmp_path):
    model = get_method("power_bert").demo_model(tiny_model).eval()
    path = tmp_path / "m.safetensors"
    checkpoint.save_model(model, path, method_modules())
    with safe_open(str(path), framework="pt") as f:
        tree = f.metadata()["tree"]
    assert "method:power_bert:PowerBertPolicy" in tree and "core:BertClassifier" in tree
    assert "methods." not in tree and "harness." not in tree
    # the plugin file moved or renamed: its registered name still finds the class
    moved = types.ModuleType("somewhere_else.power_bert_renamed")
    moved.PowerBertPolicy = type(model.policy)
    loaded = checkpoint.load_model(path, lambda m: moved if m == "power_bert" else module_of_method(m))
    assert torch.equal(_run(loaded).logits, _run(model).logits)


def test_only_module_classes_and_dataclasses_resolve(tmp_path):
    with pytest.raises(HarnessError, match="does not resolve here"):
        checkpoint.resolve_class("core:select_tokens", module_of_method)  # a function of harness.model.policy
    with pytest.raises(HarnessError, match="does not resolve here"):
        checkpoint.resolve_class("builtins:eval", module_of_method)
    with pytest.raises(HarnessError, match="does not resolve here"):
        checkpoint.resolve_class("method:power_bert:math", module_of_method)  # a module the plugin imports


def test_what_a_checkpoint_cannot_hold_is_named_at_save(tiny_model, tmp_path):
    tiny_model.policy.helper = lambda x: x
    with pytest.raises(HarnessError, match=r"model attribute policy\.helper is a function"):
        checkpoint.save_model(tiny_model, tmp_path / "m.safetensors", method_modules())


def test_a_pickled_model_from_an_older_harness_is_refused_with_the_fix(tiny_model, tmp_path, monkeypatch):
    store = JobStore(tmp_path, "mr", "dense", 0)
    store.model_dir().mkdir(parents=True)
    torch.save(tiny_model, store.model_dir() / "model.pt")  # what the harness wrote before safetensors
    monkeypatch.delenv("HARNESS_TRUST_PICKLES", raising=False)
    with pytest.raises(HarnessError) as e:
        store.load_model("model.pt", None, "cpu")
    assert "pickled by an older harness" in str(e.value) and "HARNESS_TRUST_PICKLES=1" in str(e.value)
    assert "--forcerun train train_point" in str(e.value)
    monkeypatch.setenv("HARNESS_TRUST_PICKLES", "1")
    with pytest.warns(UserWarning, match="loading the pickled model"):
        loaded = store.load_model("model.pt", None, "cpu")
    assert torch.equal(_run(loaded).logits, _run(tiny_model).logits)


def test_model_names_map_to_one_file_each(tmp_path):
    store = JobStore(tmp_path, "mr", "ltp", 0)
    assert store.checkpoint_path("lambda=0.1.pt").name == store.checkpoint_path("lambda=0.1").name == \
        "lambda=0.1.safetensors"
    assert store.checkpoint_path("theta=0.05").name != store.checkpoint_path("theta=0.06").name
    with pytest.raises(HarnessError, match="is not a file name"):
        store.checkpoint_path("sub/x.pt")


def test_a_missing_model_says_which_train_step_to_run(tmp_path):
    with pytest.raises(HarnessError, match="run the workflow's train step for mr/cofi first"):
        JobStore(tmp_path, "mr", "ltp", 0).load_model("model.pt", "cofi", "cpu")


def test_metadata_is_json_of_the_tree(tiny_model, tmp_path):
    checkpoint.save_model(tiny_model, tmp_path / "m.safetensors", method_modules())
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == checkpoint.FORMAT
    assert json.loads(meta["tree"])["class"] == "core:BertClassifier"


def test_numpy_values_and_special_floats_come_back(tiny_model, tmp_path):
    """A policy's knobs often come from numpy (a search's results, a point's counts): scalars come back as
    Python numbers, arrays as arrays; inf and nan survive."""
    import numpy as np

    tiny_model.policy.counts = np.array([5, 3, 1])
    tiny_model.policy.knobs = {"lambda": np.float64(0.1), "k": np.int64(4), "on": np.bool_(True),
                               "bounds": (float("-inf"), float("inf")), "unset": float("nan")}
    checkpoint.save_model(tiny_model, tmp_path / "m.safetensors", method_modules())
    policy = checkpoint.load_model(tmp_path / "m.safetensors", module_of_method).policy
    assert isinstance(policy.counts, np.ndarray) and policy.counts.tolist() == [5, 3, 1]
    knobs = policy.knobs
    assert knobs["lambda"] == 0.1 and type(knobs["lambda"]) is float and knobs["k"] == 4 and type(knobs["k"]) is int
    assert knobs["on"] is True and knobs["bounds"] == (float("-inf"), float("inf")) and knobs["unset"] != knobs["unset"]
