"""Small memorisable training sets drawn from the shared public data (by absolute path)."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


def _rows(name: str, n: int) -> list[dict]:
    out = []
    with (DATA / name).open(encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line))
            if len(out) >= n:
                break
    return out


def write(path: Path, records: list[dict], repeat: int = 1) -> str:
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(repeat):
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return str(path)


def cpt_docs(n: int = 4, chars: int = 120) -> list[dict]:
    return [{"kind": "document", "content": {"title": r["title"], "text": r["text"][:chars]}} for r in _rows("general_en.jsonl", n)]


def sft_qa(n: int = 4, chars: int = 60) -> list[dict]:
    return [{"kind": "qa", "content": {"question": r["question"][:chars], "answer": r["answer"][:chars]}}
            for r in _rows("huatuo26m_test_qa.jsonl", n)]


def objective_pairs(n: int = 4) -> list[dict]:
    """CareBot objective pairs (docs/METHODS.md 3.2): chosen = ground truth, rejected = a wrong option."""
    rng = random.Random(0)
    out = []
    for r in _rows("cmmlu_med.jsonl", n):
        prompt = r["question"] + "\n" + "\n".join(f"{k}. {v}" for k, v in sorted(r["options"].items()))
        wrong = rng.choice([k for k in r["options"] if k != r["answer"]])
        out.append({"kind": "pair", "content": {
            "prompt_turns": [{"role": "user", "content": prompt}],
            "chosen": f"{r['answer']}. {r['options'][r['answer']]}",
            "rejected": f"{wrong}. {r['options'][wrong]}",
        }})
    return out
