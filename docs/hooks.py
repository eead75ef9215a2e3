"""mkdocs hooks: the pages generated at build time.

* **Methods**: one page per registered plugin (`harness.plugin.docs`), so a new plugin gets its
  page, and its navigation entry, without an edit here.
* **Results**: every results page a report step wrote under `results/` (`<results_dir>/results.md`,
  `harness.report.page`) becomes `results/<profile>.md`, with the figures it shows; a checkout
  that has run nothing has none, and the site says so (docs/results.md).

Run from the project root (`mkdocs build` reads `mkdocs.yml` there), where `harness` and
`methods/` import.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mkdocs.structure.files import File  # noqa: E402

from harness.plugin.docs import index_page, method_page  # noqa: E402
from harness.plugin.registry import method_names  # noqa: E402
from harness.report.page import PAGE  # noqa: E402

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")
_TITLE = re.compile(r"^# Results: the `([^`]+)` profile", re.M)


def results_pages() -> dict[str, Path]:
    """{profile: its results page} for every results page under results/ (the first found per profile)."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / "results").rglob(PAGE)):
        m = _TITLE.search(path.read_text())
        if m:
            found.setdefault(m.group(1), path)
    return found


def _nav_after(nav: list, title: str, entry: dict) -> None:
    at = next((i for i, item in enumerate(nav) if isinstance(item, dict) and title in item), len(nav) - 1)
    nav.insert(at + 1, entry)


def on_config(config):
    nav = config["nav"]
    _nav_after(nav, "Methods and plugins", {"Methods": [{"Overview": "methods/index.md"},
                                                       *({n: f"methods/{n}.md"} for n in method_names())]})
    _nav_after(nav, "Experiments and claims", {"Results": [{"Overview": "results.md"},
                                                          *({p: f"results/{p}.md"} for p in results_pages())]})
    return config


def on_files(files, config):
    files.append(File.generated(config, "methods/index.md", content=index_page()))
    for name in method_names():
        files.append(File.generated(config, f"methods/{name}.md", content=method_page(name)))
    images: set[str] = set()
    for profile, path in results_pages().items():
        def moved(m, folder=path.parent):  # an image link relative to the page -> relative to results/<p>.md
            target = Path(os.path.normpath(folder / m.group(2))).relative_to(ROOT).as_posix()
            images.add(target)
            return f"![{m.group(1)}](../{target})"

        files.append(File.generated(config, f"results/{profile}.md", content=_IMAGE.sub(moved, path.read_text())))
    for image in sorted(images):
        if (ROOT / image).exists() and files.get_file_from_path(image) is None:
            files.append(File(image, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
