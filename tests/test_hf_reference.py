"""The independent Hugging Face reference (harness.run.hf_reference) on the
smoke profile's tiny BERT: the command writes its JSON, the same seed gives
the same numbers, the model is transformers' own class, and it sees exactly
the dense job's examples."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ))
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def smoke_cfg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    return load_config("smoke", [f"work_dir={tmp}/work", f"results_dir={tmp}/results"])


def test_command_writes_its_json(tmp_path):
    out = tmp_path / "mr-0.json"
    rc, stdout, err = cli("reference", "--profile", "smoke", "--task", "mr", "--seed", "0", "--out", str(out),
                          "--config", f"work_dir={tmp_path}/work")
    assert rc == 0, err
    assert stdout.strip().splitlines()[0] == str(out)
    a = json.loads(out.read_text())
    assert a["task"] == "mr" and a["seed"] == 0 and a["kind"] == "hf_reference"
    assert a["model_class"] == "transformers.models.bert.modeling_bert.BertForSequenceClassification"
    assert 0.0 <= a["metrics"]["accuracy"] <= 1.0
    assert 0.0 <= a["validation"]["kept"]["metrics"]["accuracy"] <= 1.0
    assert a["n_train"] == 48 and a["n_validation"] == 24 and a["n_eval"] == 32  # the smoke caps
    assert len(a["predictions"]) == 32 and set(a["predictions"]) <= {0, 1}
    hp = a["hyperparameters"]
    assert (hp["lr"], hp["batch_size"], hp["epochs"], hp["steps"]) == (1e-3, 16, 1, 3)  # smoke's train: section
    assert a["versions"]["transformers"] and a["provenance"]["config_hash"]


def test_same_seed_same_numbers_and_transformers_own_class(smoke_cfg):
    import transformers

    from harness.model.encoder import BertClassifier
    from harness.run.hf_reference import train_reference

    a, b = train_reference(smoke_cfg, "mr", 1), train_reference(smoke_cfg, "mr", 1)
    for result in (a, b):
        model = result.model
        assert type(model) is transformers.BertForSequenceClassification
        assert not any(isinstance(m, BertClassifier) for m in model.modules())
        assert model.config.num_labels == 2 and model.config.hidden_size == 64
        assert model.config.num_hidden_layers == 2
    ra, rb = a.record, b.record
    assert ra["seed"] == 1 and 0.0 <= ra["metrics"]["accuracy"] <= 1.0
    assert ra["metrics"] == rb["metrics"] and ra["predictions"] == rb["predictions"]
    assert ra["validation"] == rb["validation"]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)  # the same trained weights


@pytest.mark.parametrize("seed", [0, 3])
def test_reference_sees_the_dense_jobs_examples(smoke_cfg, seed):
    """The same eval (and train, validation) examples as the harness's dense
    job at that training seed, in the same order, and the same token ids; a
    training seed outside the config's `seeds` (3) is allowed and changes no
    example (the splits follow `split_seed`)."""
    import copy

    from harness.run.context import RunContext
    from harness.run.hf_reference import data_context, reference_data

    cfg = copy.deepcopy(smoke_cfg)
    cfg["seeds"] = [seed]
    dense = RunContext(cfg, "mr", "dense", seed)  # what train_job / evaluate_job build for dense
    ref_ctx = data_context(smoke_cfg, "mr", seed)
    assert ref_ctx.seed == seed and ref_ctx.split_seed == smoke_cfg["split_seed"]
    ref = reference_data(ref_ctx)
    for split in ("train", "validation", "eval"):
        ours, theirs = ref.examples[split], list(getattr(dense.data, split))
        assert [(e.text_a, e.text_b, e.label) for e in ours] == [(e.text_a, e.text_b, e.label) for e in theirs]
        enc = dense.encoded(split)
        rows = ref.features[split]
        assert [r["input_ids"] for r in rows] == [list(x) for x in enc.input_ids]  # tokenized independently
        assert np.array_equal(np.array([r["labels"] for r in rows]), enc.labels)
    assert len(ref.examples["eval"]) == 32


def test_span_task_uses_bert_for_question_answering(tmp_path):
    """SQuAD through the reference: transformers' QA class on the harness's
    windows, an answer per question scored by the harness's SQuAD metrics."""
    import transformers

    from harness.run.hf_reference import train_reference

    from .squad_files import write_squad_dir

    write_squad_dir(tmp_path, "1.1", articles=6, long_every=3)
    cfg = load_config("smoke", [f"data_dir={tmp_path}", f"work_dir={tmp_path}/work"])
    result = train_reference(cfg, "squad", 0)
    assert type(result.model) is transformers.BertForQuestionAnswering
    rec = result.record
    assert rec["n_eval"] == 8 and len(rec["predictions"]) == 8
    assert set(rec["metrics"]) == {"f1", "exact_match"}
    assert all(0.0 <= v <= 1.0 for v in rec["metrics"].values())
    assert rec["hyperparameters"]["max_length"] == 384


def test_bad_seed_and_out_are_one_error(tmp_path, capsys):
    from harness.cli import main

    assert main(["reference", "--profile", "smoke", "--task", "mr", "--seed", "-1",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "error: seed must be a non-negative integer" in capsys.readouterr().err
    assert main(["reference", "--profile", "smoke", "--task", "mr", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["reference", "--profile", "smoke", "--task", "imdbx", "--out", str(tmp_path / "x.json")]) == 2
    assert "unknown task 'imdbx'" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
