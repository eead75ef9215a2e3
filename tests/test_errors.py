"""Bad inputs give one clear message, a non-zero exit, and no partial results."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.plugin import registry
from harness.errors import HarnessError
from harness.plugin.base import MethodPlugin, OperatingPoint
from harness.run.jobs import evaluate_job

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, env=None):
    import os

    e = dict(os.environ)
    e.pop("HARNESS_DATA_DIR", None)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True, env=e)
    return p.returncode, p.stdout, p.stderr


def _one_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and lines[-1].strip().startswith("fix: "), stderr
    return stderr


def test_unknown_task():
    rc, _, err = cli("lengths", "--profile", "smoke", "--task", "imdbx")
    assert rc == 2
    assert "unknown task 'imdbx'" in _one_error(err) and "sst2" in err


def test_unknown_method():
    rc, _, err = cli("train", "--profile", "smoke", "--task", "mr", "--method", "nosuch")
    assert rc == 2 and "unknown method 'nosuch'" in _one_error(err) and "dense" in err


def test_unknown_profile():
    rc, _, err = cli("check-config", "--profile", "nosuch")
    assert rc == 2 and "unknown profile 'nosuch'" in _one_error(err) and "smoke" in err


def test_invalid_config_value():
    rc, _, err = cli("check-config", "--profile", "smoke", "--config", "train.lr=-1")
    assert rc == 2 and "train.lr" in _one_error(err)
    rc, _, err = cli("check-config", "--profile", "smoke", "--config", "eval.protocols=[padded]")
    assert rc == 2 and "eval.protocols" in _one_error(err)


def test_missing_data_offline(tmp_path):
    rc, _, err = cli("lengths", "--profile", "smoke", "--task", "qqp", "--config", f"data_dir={tmp_path}",
                     "--config", f"results_dir={tmp_path}/results")
    assert rc == 2
    _one_error(err)
    assert "qqp" in err and str(tmp_path) in err
    assert not (tmp_path / "results").exists()


def test_malformed_tsv(tmp_path):
    sst = tmp_path / "glue" / "SST-2"
    sst.mkdir(parents=True)
    (sst / "train.tsv").write_text("sentence\tlabel\na fine film\t1\nno label here\n")
    (sst / "dev.tsv").write_text("sentence\tlabel\ngood\t1\n")
    rc, _, err = cli("lengths", "--profile", "smoke", "--task", "sst2", "--config", f"data_dir={tmp_path}",
                     "--config", f"results_dir={tmp_path}/results")
    assert rc == 2
    _one_error(err)
    assert "train.tsv" in err and "3" in err
    assert not (tmp_path / "results").exists()


def test_snakemake_rejects_invalid_config():
    p = subprocess.run(
        ["snakemake", "-n", "--nolock", "--cores", "1", "--config", "profile=smoke", "seed=-3"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert p.returncode != 0 and "seed" in p.stderr + p.stdout


def test_failed_evaluation_leaves_no_records(tmp_path, smoke_context):
    name = "broken_for_test"

    class Broken(MethodPlugin):
        def train(self, ctx):
            return {}

        def operating_points(self, ctx):
            yield OperatingPoint("first", {}, ctx.new_model())
            raise RuntimeError("plugin failed half-way")

    registry.discover()
    registry.register_method(name)(Broken)
    try:
        cfg = smoke_context("dense", ["eval.protocols=[none]"]).cfg  # the dense model is in place
        with pytest.raises(RuntimeError, match="half-way"):
            evaluate_job(cfg, "mr", name)
        assert not list((tmp_path / "r").rglob("*.json"))
    finally:
        registry._REGISTRY.pop(name, None)


def test_harness_error_formats_problem_and_fix():
    e = HarnessError("the problem", "the fix")
    assert str(e) == "the problem\n  fix: the fix"


def test_misspelled_method_setting():
    rc, _, err = cli("check-config", "--profile", "smoke", "--config", "methods_config.lat.n_pointz=3")
    assert rc == 2
    msg = _one_error(err)
    assert "unknown setting 'n_pointz' under methods_config.lat" in msg and "n_points" in msg


def test_wrong_type_of_method_setting():
    rc, _, err = cli("check-config", "--profile", "smoke", "--config", "methods_config.spatten.ratios=high")
    assert rc == 2 and "methods_config.spatten.ratios" in _one_error(err) and "a list of a number" in err


def test_misspelled_variant_setting_and_unknown_method_section():
    rc, _, err = cli("check-config", "--profile", "smoke", "--config", "variants.ltp_short.config.lamdas=[0.1]")
    assert rc == 2 and "unknown setting 'lamdas' under variants.ltp_short.config" in _one_error(err)
    rc, _, err = cli("check-config", "--profile", "smoke", "--config", "methods_config.latt.n_points=3")
    assert rc == 2 and "'latt', which is not a registered method" in _one_error(err)


def test_snakemake_rejects_a_misspelled_setting():
    p = subprocess.run(
        ["snakemake", "-n", "--nolock", "--profile", "profiles/smoke", "--config", "methods_config={lat: {n_pointz: 3}}"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert p.returncode != 0 and "unknown setting 'n_pointz' under methods_config.lat" in p.stderr + p.stdout
