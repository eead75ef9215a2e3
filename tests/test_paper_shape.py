"""The `paper` profiles' real method settings, end to end, at full model shape.

`snakemake --profile profiles/paper` (and `profiles/paper_roberta`) runs the
whole workflow (lengths, train / train_point, gather_points, evaluate,
selection_cost, report with its claims) on CPU with a bert-base-shaped model
(12 layers, hidden 768, 12 heads, from the data directory's
bert-base-uncased/bert_config.json and vocab.txt) and a roberta-base-shaped one
(roberta-base/config.json and a byte-level BPE trained here on the task's
texts, pad id 1: no RoBERTa tokenizer files are available offline), both with
random weights, on a handful of examples and optimizer steps. Every method,
variant, experiment and claim is the profile's own; the departures from the
paper settings are exactly these `--config` overrides:

- device: cpu; allow_hub: false; data_dir: $HARNESS_DATA_DIR
- tasks: [qnli] ($HARNESS_SHAPE_TASKS, comma-separated, to change it). QNLI is in
  both profiles' task lists, its data is local (dev carved into train /
  validation / eval), and it is a task of the variants ltp_short, lat_short
  and Infor-Coef's ablations (lat_no_restore runs only on squad_v2, which has
  no offline copy, so no run here has it)
- backbone: `random` from the data directory's configs (above) instead of
  hub:bert-base-uncased / hub:roberta-base
- train: max_train_examples 8, max_validation_examples 8, max_eval_examples 8,
  and max_steps 1 (every fine-tuning call stops after one optimizer step:
  PoWER-BERT's soft_steps / hard_steps, CoFi's and Infor-Coef's epochs, LAT's
  LengthDrop epochs... all train through `finetune`, whose step count it caps)
- timing: threads 2 (this machine's cores; paper: 8), n_examples 2,
  batch_sizes [1] (the eval batch 32 is timed too, as always), min_rounds 3,
  max_rounds 3, max_seconds 0.1, protocols [none] (records of the other
  protocols carry no timing; the smoke profile times every protocol).
  dense_kernels stays the profile's ([auto, eager]). Timing is most of an
  evaluate job at this shape: 4 examples at batch sizes 1 and 4 took ~100 s
  per operating point on 2 shared cores
- methods_config.lat: evo_iterations 1, mutation_size 4, crossover_size 4 (the
  evolutionary search is validation passes, not fine-tuning steps: the paper's
  30 iterations x 60 genes would be ~1,800 bert-base passes). Its 20 initial
  genes and everything else of LAT's search stay.

It checks that every method and variant the profile runs on the task has
records, under every protocol; that the records' models are bert-base- (or
roberta-base-) shaped (dense exactly; structured pruners keep 12 layers of
64-wide heads); that every table and figure the report declares (the claims
first) exists; that provenance says device cpu; and that the resolved config
is the profile's but for the overrides above.

Slow (bert-base on 2 CPU cores: the better part of an hour for the two runs),
so it runs only with HARNESS_FULL_SHAPE=1 and a data directory:

    HARNESS_FULL_SHAPE=1 HARNESS_DATA_DIR=/path/to/data python -m pytest -q tests/test_paper_shape.py -x

HARNESS_SHAPE_OUT=<folder> keeps each run's results, figures and work there
(else pytest's tmp_path); each run writes its job count, wall time and peak
memory to `<out>/shape_run.json` and prints them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.config import load_profile, merge, validate
from harness.run import plan

from .conftest import DATA_DIR
from .workflow_run import ROOT, command, records

pytestmark = [
    pytest.mark.skipif(os.environ.get("HARNESS_FULL_SHAPE") != "1",
                       reason="full-shape paper run (bert-base / roberta-base on CPU, slow): set HARNESS_FULL_SHAPE=1"),
    pytest.mark.skipif(not DATA_DIR, reason="needs HARNESS_DATA_DIR (bert-base-uncased/, roberta-base/, glue/)"),
]

TASKS = [t for t in os.environ.get("HARNESS_SHAPE_TASKS", "qnli").split(",") if t]
GLUE_DIRS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qnli": "QNLI", "rte": "RTE",
             "wnli": "WNLI"}
TRAIN = {"max_train_examples": 8, "max_validation_examples": 8, "max_eval_examples": 8, "max_steps": 1}
TIMING = {"threads": 2, "n_examples": 2, "batch_sizes": [1], "min_rounds": 3, "max_rounds": 3, "max_seconds": 0.1,
          "protocols": ["none"]}
LAT = {"evo_iterations": 1, "mutation_size": 4, "crossover_size": 4}
SHAPES = {"bert": {"hidden": 768, "layers": 12, "heads": 12, "ffn": 3072},
          "roberta": {"hidden": 768, "layers": 12, "heads": 12, "ffn": 3072}}


def _flow(d: dict) -> str:
    return json.dumps(d)  # JSON is YAML: Snakemake's --config reads it as a mapping


def write_roberta_tokenizer(folder: Path, tasks: list[str]) -> None:
    """roberta-base's tokenizer files (vocab.json, merges.txt) in small: a
    byte-level BPE trained on the tasks' local GLUE files, with roberta-base's
    special tokens at its ids (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 4), and
    roberta-base's config.json beside them so AutoTokenizer reads a RoBERTa
    tokenizer."""
    from tokenizers import ByteLevelBPETokenizer

    glue = Path(DATA_DIR) / "glue"
    files = [str(p) for t in tasks if t in GLUE_DIRS for p in sorted((glue / GLUE_DIRS[t]).glob("*.tsv"))]
    files = files or [str(p) for p in sorted(glue.glob("*/dev.tsv"))]
    tok = ByteLevelBPETokenizer()
    tok.train(files, vocab_size=8000, min_frequency=2, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
              show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_model(str(folder))
    shutil.copy(Path(DATA_DIR) / "roberta-base" / "config.json", folder / "config.json")


def overrides(profile: str, out: Path) -> tuple[str, ...]:
    """The `--config` overrides of a run (the module docstring lists them)."""
    if profile == "paper_roberta":
        tok_dir = out / "roberta-bpe"
        write_roberta_tokenizer(tok_dir, TASKS)
        backbone = {"name": "roberta-base-random", "model": "random",
                    "config_file": "{data_dir}/roberta-base/config.json", "tokenizer": f"path:{tok_dir}"}
    else:
        backbone = {"name": "bert-base-uncased-random", "model": "random",
                    "config_file": "{data_dir}/bert-base-uncased/bert_config.json",
                    "tokenizer": "vocab:{data_dir}/bert-base-uncased/vocab.txt"}
    return ("device=cpu", "allow_hub=false", f"data_dir={DATA_DIR}", f"tasks={_flow(TASKS)}",
            f"backbone={_flow(backbone)}", f"train={_flow(TRAIN)}", f"timing={_flow(TIMING)}",
            f"methods_config={_flow({'lat': LAT})}")


def run_profile(profile: str, out: Path) -> dict:
    """The whole workflow (target `all`) on `profile` with the overrides; its
    job count, wall time and peak memory (the largest job's, from their logs)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(out, "--cores", "2", config=overrides(profile, out), profile=f"profiles/{profile}")
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    log = p.stdout + p.stderr
    (out / "snakemake.log").write_text(log)
    assert p.returncode == 0, log[-6000:]
    jobs = re.search(r"^total\s+(\d+)", log, re.M)
    peaks = {}
    for f in (out / "work" / "logs").glob("*.log"):
        m = re.findall(r"peak resident memory: (\d+) MiB", f.read_text(errors="replace"))  # after tqdm's \r
        if m:
            peaks[f.stem] = int(m[-1])
    top = max(peaks, key=peaks.get) if peaks else None
    stats = {"profile": profile, "tasks": TASKS, "jobs": int(jobs.group(1)) if jobs else None,
             "wall_s": round(wall, 1), "peak_rss_mib": peaks.get(top), "peak_job": top}
    (out / "shape_run.json").write_text(json.dumps(stats, indent=1))
    print(json.dumps(stats))
    return stats


@pytest.fixture(scope="module", params=["paper", "paper_roberta"])
def shape_run(request, tmp_path_factory):
    profile = request.param
    keep = os.environ.get("HARNESS_SHAPE_OUT")
    out = Path(keep) / profile if keep else tmp_path_factory.mktemp(profile)
    run_profile(profile, out)
    return profile, out


def test_paper_profile_end_to_end_at_full_shape(shape_run):
    profile, out = shape_run
    cfg = json.loads((out / "work" / "config.json").read_text())

    # the profile's own settings but for the overrides
    own = load_profile(profile)
    expected = validate(merge(own, {"device": "cpu", "allow_hub": False, "data_dir": DATA_DIR, "tasks": TASKS,
                                    "train": TRAIN, "timing": TIMING, "methods_config": {"lat": LAT}}))
    for key in ("methods", "exclude_methods", "variants", "experiments", "eval", "seed"):
        assert cfg.get(key) == expected.get(key), key
    # methods_config through each plugin's typed Settings (Snakemake hands nested --config values over as
    # strings, which config.json keeps under methods_config; the Settings read them as numbers)
    for name in plan.resolve_methods(cfg):
        assert plan.settings_for(cfg, name) == plan.settings_for(expected, name), name
    for key, value in expected["train"].items():
        assert cfg["train"][key] == value, f"train.{key}"
    assert cfg["backbone"]["model"] == "random"

    # every method and variant the profile runs on the task has records, under every protocol
    tasks = plan.resolve_tasks(cfg)
    methods = plan.resolve_methods(cfg)
    assert tasks == TASKS
    assert methods == plan.resolve_methods(validate(merge(own, {"tasks": TASKS}))), "the method list is the profile's"
    recs = records(out)
    protocols = set(cfg["eval"]["protocols"])
    ran = [(t, m) for t in tasks for m in methods if plan.runs_on(cfg, t, m)]
    assert ran
    for task, method in ran:
        mine = [r for r in recs if r["task"] == task and r["method"] == method]
        assert {r["protocol"] for r in mine} == protocols, (task, method)
    assert {(r["task"], r["method"]) for r in recs} == set(ran)
    # the variants the profile runs: paper_roberta inherits paper's variants but runs only LTP's
    variants = [v for v in cfg.get("variants", {}) if v in methods and any(plan.runs_on(cfg, t, v) for t in tasks)]
    assert variants and all(any(r["method"] == v for r in recs) for v in variants)

    # full-size models: dense exactly, the others keep the 12 layers of 64-wide heads
    kind = "roberta" if profile == "paper_roberta" else "bert"
    shape = SHAPES[kind]
    for r in recs:
        a = r["arch"]
        where = f"{r['task']}/{r['method']}/{r['operating_point']}"
        assert len(a["heads"]) == shape["layers"] and a["head_dim"] == shape["hidden"] // shape["heads"], where
        assert a["hidden"] <= shape["hidden"] and max(a["heads"]) <= shape["heads"], where
        if r["base_method"] not in ("cofi", "infor_coef"):  # the structured pruners shrink heads, FFN, hidden
            assert a["hidden"] == shape["hidden"] and list(a["heads"]) == [shape["heads"]] * shape["layers"], where
            assert list(a["ffn"]) == [shape["ffn"]] * shape["layers"], where
        assert r["backbone"] == cfg["backbone"]["name"]
        assert r["provenance"]["device"] == "cpu", where
        assert r["n_train"] <= TRAIN["max_train_examples"] and r["n_eval"] <= TRAIN["max_eval_examples"]

    # the report: every declared table and figure, the claims first
    from harness.report.build import planned_outputs

    paths = [Path(o.path) for o in planned_outputs(cfg, methods)]
    assert paths and all(p.is_file() for p in paths), [str(p) for p in paths if not p.is_file()]
    claims = out / "results" / "tables" / "claims.md"
    assert claims.is_file() and claims.stat().st_size > 0
    assert (out / "results" / "summary.csv").stat().st_size > 0
