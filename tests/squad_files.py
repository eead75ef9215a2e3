"""A tiny SQuAD-format data folder the tests write (the real dev file is not
in the repository): articles of a few paragraphs, some long enough to need
several 384-token windows, questions whose answers are words of the context."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_WORDS = ("river city castle museum bridge forest harbour tower market garden valley island temple station "
          "library theatre mountain palace village cathedral").split()


def tiny_squad(articles: int = 12, paragraphs: int = 2, questions: int = 3, version: str = "1.1",
               long_every: int = 4, seed: int = 0) -> dict:
    """The JSON of a tiny SQuAD file; every `long_every`-th paragraph has ~600
    words (several windows); under v2.0 every third question is unanswerable."""
    rng = np.random.default_rng(seed)
    data, n = [], 0
    for a in range(articles):
        paras = []
        for p in range(paragraphs):
            size = 600 if (a * paragraphs + p) % long_every == 0 else 60
            words = [str(w) for w in rng.choice(_WORDS, size)]
            qas = []
            for k in range(questions):
                at = int(rng.integers(0, size - 2))
                answer = f"{words[at]} {words[at + 1]}"
                start = len(" ".join(words[:at])) + (1 if at else 0)
                qa = {"id": f"q{n}", "question": f"Which place follows {words[at - 1] if at else 'nothing'} "
                                                 f"in paragraph {p} of article {a}?",
                      "answers": [{"text": answer, "answer_start": start}]}
                if version == "2.0":
                    qa["is_impossible"] = k % 3 == 2
                    if qa["is_impossible"]:
                        qa["plausible_answers"], qa["answers"] = qa["answers"], []
                qas.append(qa)
                n += 1
            paras.append({"context": " ".join(words), "qas": qas})
        data.append({"title": f"Article_{a}", "paragraphs": paras})
    return {"version": version, "data": data}


def write_squad_dir(root: Path, version: str = "1.1", **kw) -> Path:
    """`root/squad_v1.1/dev-v1.1.json` (or the v2.0 names): the official layout."""
    folder = root / ("squad_v1.1" if version == "1.1" else "squad_v2.0")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"dev-v{version}.json").write_text(json.dumps(tiny_squad(version=version, **kw)), encoding="utf-8")
    return root
