"""SQuAD v1.1 / v2.0: the official JSON, checked entry by entry, and splits by article.

A question is only as independent as its paragraph: SQuAD asks several
questions about each context and several contexts come from one Wikipedia
article. Splitting by question would put the same context in train and eval,
so every split here is made by **article** (`carve_by_article`,
`hold_out_by_article`): no article, hence no context, is shared across
train, validation and eval, and the split note says so.

The reader refuses a malformed file with one HarnessError naming the file and
the entry (`data[i].paragraphs[j].qas[k]`, with the question id), not a
KeyError deep inside tokenization: missing fields, an `answer_start` that
does not point at its answer text, an answerable question without answers,
non-JSON.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from harness.errors import HarnessError

VERSIONS = ("1.1", "2.0")


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset in the context


@dataclass(frozen=True)
class QAExample:
    """One SQuAD question. `text_a`/`text_b` (question, context) let the
    length statistics treat it as the pair the encoder reads; `label` is the
    gold answers (empty for an unanswerable v2.0 question)."""

    id: str
    title: str
    context: str
    question: str
    answers: tuple[Answer, ...]

    @property
    def text_a(self) -> str:
        return self.question

    @property
    def text_b(self) -> str:
        return self.context

    @property
    def label(self) -> tuple[Answer, ...]:
        return self.answers

    @property
    def has_answer(self) -> bool:
        return bool(self.answers)


def _bad(path: str, where: str, what: str) -> HarnessError:
    return HarnessError(
        f"malformed SQuAD file {path}, {where}: {what}",
        "repair or re-download that file in the official SQuAD JSON format (or remove it so the task "
        "loads from the hub)",
    )


def _field(obj, key: str, kind, path: str, where: str):
    if not isinstance(obj, dict):
        raise _bad(path, where, f"expected a JSON object, found {type(obj).__name__}")
    if key not in obj:
        raise _bad(path, where, f"lacks the field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _bad(path, where, f"field {key!r} is a {type(value).__name__}, expected {names}")
    return value


def _answers(qa: dict, context: str, version: str, path: str, where: str) -> tuple[Answer, ...]:
    impossible = False
    if version == "2.0":
        impossible = bool(qa.get("is_impossible", False))
    raw = _field(qa, "answers", list, path, where)
    if impossible:
        return ()  # v2.0 keeps plausible_answers apart; an unanswerable question has no gold span
    if not raw:
        raise _bad(path, where, "an answerable question has no answers")
    out = []
    for a, ans in enumerate(raw):
        at = f"{where}.answers[{a}]"
        text = _field(ans, "text", str, path, at)
        start = _field(ans, "answer_start", int, path, at)
        found = context[start:start + len(text)] if start >= 0 else None
        if found != text:
            raise _bad(path, at, f"answer_start {start} does not point at its text {text!r} "
                                 f"(the context there reads {found!r})")
        out.append(Answer(text, start))
    return tuple(out)


def read_squad(path: str, version: str) -> list[QAExample]:
    """Every question of an official SQuAD JSON file, in file order."""
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"data file {path} is not JSON ({exc})",
                           "re-download the file in the official SQuAD JSON format") from None
    except UnicodeDecodeError as exc:
        raise HarnessError(f"data file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                           "re-download the file in the official SQuAD JSON format") from None
    except OSError as exc:
        raise HarnessError(f"cannot read data file {path}: {exc.strerror or exc}",
                           "check that the file exists and is readable") from None
    articles = _field(doc, "data", list, path, "the top level")
    examples: list[QAExample] = []
    seen: set[str] = set()
    for i, article in enumerate(articles):
        title = _field(article, "title", str, path, f"data[{i}]")
        for j, para in enumerate(_field(article, "paragraphs", list, path, f"data[{i}]")):
            where_p = f"data[{i}].paragraphs[{j}]"
            context = _field(para, "context", str, path, where_p)
            for k, qa in enumerate(_field(para, "qas", list, path, where_p)):
                where = f"{where_p}.qas[{k}]"
                qid = _field(qa, "id", str, path, where)
                where = f"{where} (id {qid})"
                if qid in seen:
                    raise _bad(path, where, "the question id is not unique")
                seen.add(qid)
                question = _field(qa, "question", str, path, where)
                if not question.strip():
                    raise _bad(path, where, "the question is empty")
                examples.append(QAExample(qid, title, context, question,
                                          _answers(qa, context, version, path, where)))
    if not examples:
        raise HarnessError(f"data file {path} holds no questions",
                           "re-download the file in the official SQuAD JSON format")
    return examples


# --------------------------------------------------------------------------- splits by article


def _articles(examples: list[QAExample]) -> dict[str, list[int]]:
    """title -> indices of its questions, in file order (titles are unique per article in SQuAD)."""
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.title, []).append(i)
    return groups


def _fill(groups: dict[str, list[int]], order: list[str], shares: list[float]) -> list[list[str]]:
    """Articles (in `order`) into parts holding at least each share of the
    questions, in turn; the last part takes the rest. Every part gets at least
    one article."""
    total = sum(len(g) for g in groups.values())
    parts: list[list[str]] = [[] for _ in range(len(shares) + 1)]
    part, count = 0, 0
    for n_left, title in zip(range(len(order), 0, -1), order):
        # keep one article for each later part
        later = len(parts) - part - 1
        if part < len(shares) and parts[part] and (count >= shares[part] * total or n_left <= later):
            part, count = part + 1, 0
        parts[part].append(title)
        count += len(groups[title])
    return parts


def _take(examples, groups, titles) -> list[QAExample]:
    return [examples[i] for i in sorted(i for t in titles for i in groups[t])]


def _describe(name: str, titles: list[str], examples: list[QAExample]) -> str:
    return f"{len(titles)} articles / {len(examples):,} questions {name}"


def carve_by_article(examples: list[QAExample], seed: int, eval_fraction: float, fraction: float,
                     origin: str) -> tuple[list[QAExample], list[QAExample], list[QAExample], str]:
    """Train / validation / eval from one file, by article (seeded order;
    eval and validation take at least their share of the questions)."""
    groups = _articles(examples)
    if len(groups) < 3:
        raise HarnessError(f"{origin} holds {len(groups)} article(s); carving train, validation and eval by "
                           "article needs at least 3", "supply a SQuAD file with more articles (or a train file)")
    titles = list(groups)
    order = [titles[i] for i in np.random.RandomState(seed).permutation(len(titles))]
    ev_t, va_t, tr_t = _fill(groups, order, [eval_fraction, fraction])
    tr, va, ev = (_take(examples, groups, t) for t in (tr_t, va_t, ev_t))
    note = (f"only one labelled split available ({origin}, {len(groups)} articles, {len(examples):,} questions): "
            f"carved by article, no article or context shared across splits (seed {seed}): "
            f"{_describe('train', tr_t, tr)}, {_describe('validation', va_t, va)}, {_describe('eval', ev_t, ev)}; "
            "eval is a seeded carve-out, not the official evaluation set")
    return tr, va, ev, note


def hold_out_by_article(train: list[QAExample], eval_: list[QAExample], seed: int, fraction: float,
                        eval_desc: str) -> tuple[list[QAExample], list[QAExample], list[QAExample], str]:
    """Validation = a seeded set of train's articles; eval = the official file."""
    groups = _articles(train)
    titles = list(groups)
    if len(titles) < 2:
        raise HarnessError(f"the SQuAD train file holds {len(titles)} article(s); holding validation out by "
                           "article needs at least 2", "supply the full official train file")
    order = [titles[i] for i in np.random.RandomState(seed).permutation(len(titles))]
    va_t, tr_t = _fill(groups, order, [fraction])
    tr, va = _take(train, groups, tr_t), _take(train, groups, va_t)
    note = (f"train = official train minus a seeded held-out set of its articles as validation (seed {seed}), "
            f"by article, no article shared: {_describe('train', tr_t, tr)}, "
            f"{_describe('validation', va_t, va)}; eval = {eval_desc} "
            f"({len(_articles(eval_))} articles / {len(eval_):,} questions)")
    return tr, va, eval_, note
