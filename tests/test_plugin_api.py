"""The plugin API: a method file imports nothing of the harness but `harness.plugin`
and no other method, and the job context it is handed (`RunContext`) has every
member of the `JobContext` protocol methods are written against."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

from harness.config import load_config
from harness.plugin.context import JobContext
from harness.run.context import RunContext

ROOT = Path(__file__).resolve().parents[1]
API = "harness.plugin"


def _forbidden_imports(path: Path) -> list[str]:
    """Every import in `path` (at any depth) of the harness other than `harness.plugin`, and of a
    method (`methods`, `methods.<name>`, or a relative import from inside the package)."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from . import ltp`, `from .ltp import ...`: another method
                bad.append(f"{path.name}:{node.lineno}: from {'.' * node.level}{node.module or ''} import ...")
                continue
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            if (top == "harness" and module != API) or top == "methods":
                bad.append(f"{path.name}:{node.lineno}: {module}")
    return bad


def _method_files() -> list[Path]:
    """Every registered method's file: methods/ and the packages in HARNESS_PLUGIN_PACKAGES."""
    import sys

    from harness.plugin.registry import method_modules

    files = {Path(sys.modules[m].__file__).resolve() for m in method_modules()}
    return sorted(files | {p.resolve() for p in (ROOT / "methods").glob("*.py") if p.name != "__init__.py"})


def test_methods_import_only_the_plugin_api():
    files = _method_files()
    assert files, "no method files found"
    bad = [line for p in files for line in _forbidden_imports(p)]
    assert bad == [], f"a method imports only `{API}` of the harness and never another method: {bad}"


def test_the_import_check_sees_what_it_must(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import torch\nfrom harness.plugin import MethodPlugin\nimport harness.plugin\n"
                   "from harness.train.finetune import task_loss\nimport harness.model.policy\nimport harness\n"
                   "from methods.ltp import LTPPolicy\nimport methods.cofi\nfrom . import fastbert\n"
                   "def f():\n    from harness.plugin.registry import get_method\n")
    found = [line.split(": ", 1)[1] for line in _forbidden_imports(src)]
    assert found == ["harness.train.finetune", "harness.model.policy", "harness", "methods.ltp", "methods.cofi",
                     "from . import ...", "harness.plugin.registry"]


def _protocol_members(proto) -> dict[str, object]:
    """{name: what the protocol declares}: its annotated attributes and its methods and properties."""
    members = {name: None for name in getattr(proto, "__annotations__", {})}
    members.update({name: value for name, value in vars(proto).items() if not name.startswith("_")})
    return members


def _parameters(fn) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def test_run_context_implements_job_context(tmp_path):
    cfg = load_config("smoke", [f"work_dir={tmp_path}/w", f"results_dir={tmp_path}/r", "data_dir="])
    ctx = RunContext(cfg, "mr", "ltp")
    members = _protocol_members(JobContext)
    assert {"task", "settings", "finetune", "points", "train_setting", "load_model"} <= set(members)
    for name, declared in members.items():
        try:  # without running it: a cached property would load the data
            found = inspect.getattr_static(ctx, name)
        except AttributeError:
            raise AssertionError(f"RunContext lacks JobContext.{name}") from None
        if inspect.isfunction(declared):
            assert inspect.isfunction(found), f"RunContext.{name} is not a method"
            assert _parameters(found) == _parameters(declared), f"RunContext.{name} takes other parameters"
        elif isinstance(declared, property):
            assert not inspect.isfunction(found), f"RunContext.{name} is a method, JobContext's a property"
