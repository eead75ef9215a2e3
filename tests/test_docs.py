"""The documentation site: it builds strictly, every registered method has a page generated from
its plugin, and a results page a report step wrote appears in the site with its figures."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.plugin.docs import index_page, method_page, setting_notes
from harness.plugin.registry import get_method, method_names

ROOT = Path(__file__).resolve().parents[1]


def test_every_method_page_says_what_its_plugin_says():
    assert {"dense", "ltp", "cofi", "fastbert"} <= set(method_names())
    for name in method_names():
        plugin, page = get_method(name), method_page(name)
        assert page.startswith(f"# `{name}`"), name
        for field in dataclasses.fields(plugin.Settings):
            assert f"| `{field.name}` |" in page, (name, field.name)
        for line in plugin.deviations:
            assert line.replace("|", r"\|").replace("\n", " ") in page, (name, line[:40])
        for required in plugin.requires:
            assert f"[`{required}`]({required}.md)" in page, name
        assert f"[`{name}`]({name}.md)" in index_page()
    # the plugin's own docstring is the page's body (LTP: its paper)
    assert "Learned Token Pruning" in method_page("ltp") and "KDD 2022" in method_page("ltp")
    # the comment beside a setting in the source is its note
    assert "None: theta_final_rel / (mean training length)" in setting_notes(get_method("ltp").Settings)["theta_final"]


def test_setting_notes_read_comments_above_and_beside_and_from_the_base_class():
    from harness.plugin.settings import MethodSettings

    @dataclasses.dataclass(frozen=True)
    class Settings(MethodSettings):
        # how many
        # things
        count: int = 3
        rate: float = 0.1  # per step
        bare: bool = False

    notes = setting_notes(Settings)
    assert notes["count"] == "how many things" and notes["rate"] == "per step" and notes["bare"] == ""
    assert "Drop-and-Restore" in notes["restore_dropped"]  # from MethodSettings, two comment lines above it


def _mkdocs() -> list[str]:
    exe = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("mkdocs is not installed: `make install` installs it (the test extra pins mkdocs-material)")
    return [exe]


def test_the_site_builds_strictly_with_method_and_results_pages(tmp_path):
    """`mkdocs build --strict` on a copy of the docs (so the checkout's own results/ do not count), with
    one results page a report step wrote: the site has a page per method and that results page with
    its figure; a broken link fails the build."""
    src = tmp_path / "project"
    for part in ("docs", "mkdocs.yml", "harness", "methods", "rules"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, src / part)
    results, figures = src / "results" / "claims", src / "figures" / "claims"
    figures.mkdir(parents=True)
    (figures / "tradeoff_none.png").write_bytes((ROOT / "docs" / "assets" / "tradeoff_none.png").read_bytes())
    results.mkdir(parents=True)
    (results / "results.md").write_text("# Results: the `claims` profile\n\n## Trade-offs\n\n"
                                        "![tradeoff_none](../../figures/claims/tradeoff_none.png)\n")
    site = tmp_path / "site"
    p = subprocess.run([*_mkdocs(), "build", "--strict", "-d", str(site)], cwd=src, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for name in method_names():
        assert (site / "methods" / name / "index.html").exists(), name
    page = (site / "results" / "claims" / "index.html").read_text()
    assert "tradeoff_none.png" in page and (site / "figures" / "claims" / "tradeoff_none.png").exists()
    assert "Results" in (site / "index.html").read_text()  # in the navigation
    # a broken link is an error under --strict
    (src / "docs" / "errors.md").write_text("# Errors\n\n[gone](nowhere.md)\n")
    p = subprocess.run([*_mkdocs(), "build", "--strict", "-d", str(tmp_path / "site2")], cwd=src,
                       capture_output=True, text=True)
    assert p.returncode != 0 and "nowhere.md" in p.stdout + p.stderr


def test_the_layout_page_names_every_module_and_method():
    """docs/layout.md lists every module of harness/ and every plugin file: a new one must be added there."""
    layout = (ROOT / "docs" / "layout.md").read_text()
    modules = [p.relative_to(ROOT / "harness").as_posix() for p in (ROOT / "harness").rglob("*.py")
               if p.name != "__init__.py"]
    assert [m for m in modules if f"  {m} " not in layout] == []
    methods = [p.stem for p in (ROOT / "methods").glob("*.py") if p.name != "__init__.py"]
    listed = layout.split("methods/", 1)[1].split("tests/", 1)[0]
    assert [m for m in methods if m not in listed] == []
