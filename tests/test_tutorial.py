"""docs/tutorial.md, run as a reader would: its plugin file (the page's code block) goes into a plugin
package of its own (`HARNESS_PLUGIN_PACKAGES`), `python -m harness list` shows it, the generic method
tests pick it up without a list naming it, and the smoke workflow trains and evaluates it end to end
into records and a trade-off figure, with no core file, Snakefile or test list touched."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from .workflow_run import ROOT, command

PAGE = ROOT / "docs" / "tutorial.md"


def _plugin_code() -> str:
    blocks = re.findall(r'```python title="methods/truncate.py"\n(.*?)```', PAGE.read_text(), re.S)
    assert len(blocks) == 1, "the tutorial's plugin file is its one titled code block"
    return blocks[0]


def test_the_tutorial_method_runs_end_to_end(tmp_path):
    pkg = tmp_path / "my_plugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "truncate.py").write_text(_plugin_code())
    env = {**os.environ, "HARNESS_PLUGIN_PACKAGES": "my_plugins",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}

    def run(cmd):
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        assert p.returncode == 0, " ".join(cmd) + "\n" + p.stdout[-3000:] + p.stderr[-3000:]
        return p.stdout

    # step 2: the registry has it, and the generic tests run on it (no list names it)
    assert re.search(r"^\s*truncate\b.*keep each input's first tokens", run([sys.executable, "-m", "harness", "list"]),
                     re.M)
    out = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_methods.py",
               "tests/test_checkpoint.py", "-k", "truncate"])
    passed = int(re.search(r"(\d+) passed", out).group(1))
    assert passed >= 8 and "failed" not in out, out[-2000:]
    # its file imports the plugin API only (the check reads every registered method's file)
    out = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_plugin_api.py::test_methods_import_only_the_plugin_api"])
    assert "1 passed" in out
    # step 3: the smoke workflow, the method alone (and the dense model it starts from)
    run(command(tmp_path / "run", "--cores", "2", config=("methods=[truncate]", "seeds=[0]")))
    records = [json.loads(p.read_text()) for p in (tmp_path / "run" / "results" / "records" / "mr" / "truncate")
               .rglob("*.json")]
    points = {r["operating_point"] for r in records}
    assert points == {"fraction=0.5", "fraction=0.75"}
    assert {r["protocol"] for r in records} == {"sequence", "batch", "none"}
    for r in records:
        assert r["flops_speedup"] > 1.0 and r["policy"]["fraction"] in (0.5, 0.75)
    assert (tmp_path / "run" / "figures" / "tradeoff_none.png").is_file()
    assert list((tmp_path / "run" / "work" / "models" / "mr" / "truncate").rglob("*.safetensors"))
