"""The layers, as import-linter contracts (`[tool.importlinter]` in pyproject.toml): each module
imports only from layers below its own (errors, config/storage/pareto, data, model, measure, record,
claim_spec, train, plugin, methods, run, report, cli), a method only the plugin API (`harness.plugin`
itself, not its submodules), and the report no jobs, training, models or methods. An arrow
back up fails here, and the contracts are shown to catch one: a copy of the code with a deliberate
upward import, and one with a method reaching past the API, are both refused."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c",
        "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([*LINT, "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True)


def _copy(tmp_path: Path) -> Path:
    for name in ("harness", "methods"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_its_layers():
    p = _lint(ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3 kept, 0 broken" in p.stdout


def test_an_import_back_up_breaks_the_layers(tmp_path):
    root = _copy(tmp_path)
    trace = root / "harness" / "model" / "trace.py"
    trace.write_text(trace.read_text() + "\n\ndef _deliberate():\n    from harness.run import context  # noqa\n")
    p = _lint(root)
    assert p.returncode != 0
    assert "harness layers: each imports only the layers below it BROKEN" in p.stdout
    assert "harness.model.trace -> harness.run.context" in p.stdout


def test_a_method_past_the_plugin_api_is_refused(tmp_path):
    root = _copy(tmp_path)
    dense = root / "methods" / "dense.py"
    dense.write_text(dense.read_text() + "\nfrom harness.model.encoder import BertClassifier  # noqa\n")
    p = _lint(root)
    assert p.returncode != 0
    assert "methods import the plugin API only BROKEN" in p.stdout
    assert "methods.dense -> harness.model.encoder" in p.stdout
