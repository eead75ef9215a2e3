"""One documentation page per registered method, generated from its plugin.

Why: a method's page must say what its code does today. Everything on it comes from the plugin:
the paper and the method's description (the plugin module's docstring), its settings with types,
defaults and the comments beside them in the source (`Settings`), the methods it starts from
(`requires`), the task heads it cannot serve (`cannot_serve`) and how it departs from the paper
and its reference code (`deviations`, the text every record stores). Hand-written pages would
drift from the plugins; these are rebuilt at every docs build (`docs/hooks.py`), so they cannot.
A new plugin gets its page without any edit to the docs.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path

from harness.plugin.registry import get_method, method_names
from harness.plugin.settings import describe

_FIELD = re.compile(r"^(\w+)\s*:[^#]*?(?:#\s*(.*))?$")


def setting_notes(cls) -> dict[str, str]:
    """{setting: the comment on its line, after any comment lines just above it} from the source of
    `cls` and the dataclasses it extends (a subclass's comment wins)."""
    names = {f.name for f in dataclasses.fields(cls)}
    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):  # defined where no source is kept (an interactive session)
            continue
        above: list[str] = []
        for line in lines[1:]:
            text = line.strip()
            if text.startswith("#"):
                above.append(text.lstrip("#").strip())
                continue
            m = _FIELD.match(text)
            if m and m.group(1) in names:
                note = " ".join(x for x in (*above, m.group(2) or "") if x)
                if note or m.group(1) not in notes:
                    notes[m.group(1)] = note
            above = []
    return notes


def _markdown(text: str) -> str:
    """A docstring as Markdown prose: asterisks that are not list bullets are literal (formulas
    such as theta_final*l/L), and a numbered or bulleted list gets the blank line Markdown needs."""
    out: list[str] = []
    for line in inspect.cleandoc(text).splitlines():
        bullet = re.match(r"^(\s*)([*-] |\d+\. )(.*)$", line)
        body = bullet.group(3) if bullet else line
        body = body.replace("*", r"\*").replace("|", r"\|")
        line = f"{bullet.group(1)}{bullet.group(2)}{body}" if bullet else body
        if bullet and out and out[-1].strip() and not re.match(r"^\s*([*-] |\d+\. )", out[-1]) \
                and not out[-1].startswith("    "):
            out.append("")
        out.append(line)
    return "\n".join(out)


def _cell(value) -> str:
    return str(value).replace("|", r"\|").replace("\n", " ")


def source_file(name: str) -> str:
    """Where the plugin `name` lives, relative to the project when it is inside it."""
    path = Path(inspect.getfile(type(get_method(name)))).resolve()
    root = Path(__file__).resolve().parents[2]
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def method_page(name: str) -> str:
    """The Markdown page of the registered method `name`."""
    plugin = get_method(name)
    module = sys.modules[type(plugin).__module__]
    lines = [f"# `{name}`", "", f"*{_cell(plugin.summary)}*" if plugin.summary else "", ""]
    if module.__doc__:
        lines += [_markdown(module.__doc__), ""]
    lines += ["## Settings", "",
              f"Set under `methods_config.{name}` in a profile (or a variant's `config`); checked before "
              "anything runs (`python -m harness list --settings`).", "",
              "| setting | type | default | note |", "|---|---|---|---|"]
    notes = setting_notes(plugin.Settings)
    for key, kind, default in describe(plugin.Settings):
        lines.append(f"| `{key}` | {_cell(kind)} | `{_cell(repr(default))}` | {_cell(notes.get(key, ''))} |")
    lines += ["", "## What it runs on", ""]
    requires = ", ".join(f"[`{r}`]({r}.md)" for r in plugin.requires) or "nothing: it fine-tunes the backbone"
    lines.append(f"- Starts from: {requires}.")
    if plugin.cannot_serve:
        for head, why in sorted(plugin.cannot_serve.items()):
            lines.append(f"- Cannot serve `{head}` tasks: {_cell(why)}")
    else:
        lines.append("- Serves every task head.")
    lines += ["", "## Deviations from the paper and its code", ""]
    lines += [f"- {_cell(d)}" for d in plugin.deviations] or ["None recorded."]
    lines += ["", f"Source: `{source_file(name)}`.", ""]
    return "\n".join(lines)


def index_page() -> str:
    """The list of every registered method, linking its page."""
    rows = [f"| [`{n}`]({n}.md) | {_cell(get_method(n).summary)} |" for n in method_names()]
    return "\n".join(["# Methods", "",
                      "Every registered method plugin, each page generated from the plugin itself "
                      "(`harness/plugin/docs.py`).", "", "| method | what it is |", "|---|---|", *rows, ""])
