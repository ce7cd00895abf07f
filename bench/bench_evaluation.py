"""Evaluation core benchmark: MCQ answer extraction (quality and speed) against a naive "first letter,
else A" scorer, and character-level ROUGE-L through rouge-score against a plain-Python LCS reference.

    .venv/bin/python bench/bench_evaluation.py [--repeats 5] [--pairs 400]

Uses the shared data (MEDSTUDIO_SHARED_DATA, default /work/shared/data): every CMMLU-med and PubMedQA
item, each rendered in several real-output phrasings with a known intended answer (or a refusal).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.pipeline.extraction import extract_choice  # noqa: E402
from training.pipeline.rouge import rouge_l, tokenize  # noqa: E402

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))

ZH = ["{a}", "答案是{a}", "答案：{a}. {t}", "正确答案为（{a}）。", "故选{a}", "{a}项正确。",
      "根据题意，{t}符合要求。", "分析：选项{o}错误……综上，答案是{a}。", "{a}\n\n解析：{t}是正确的。"]
EN = ["{a}", "The answer is ({a})", "Answer: {a}. {t}", "I would choose {a}.", "{t}.",
      "Let's think. Option {o} is wrong. Therefore the answer is {a}.", "{a}) {t}", "Option {a} is correct."]
REFUSE_ZH = ["抱歉，我无法回答这个问题。", "这个问题需要更多信息才能判断。"]
REFUSE_EN = ["I'm sorry, but I cannot answer this question.", "There is not enough information to decide."]


def naive(text: str, options: dict) -> str:
    """The public-scorer habit this project avoids: first capital option letter, else 'A'."""
    m = re.search(rf"[{''.join(options)}]", text)
    return m.group(0) if m else "A"


def load(name):
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def cases():
    rng = random.Random(0)
    out = []
    for r in load("cmmlu_med.jsonl") + load("pubmedqa.jsonl"):
        zh = r["lang"] == "zh"
        opts, a = r["options"], r["answer"]
        other = next(k for k in opts if k != a)
        for tpl in rng.sample(ZH if zh else EN, 3):
            out.append((tpl.format(a=a, t=opts[a], o=other), opts, a))
        out.append((rng.choice(REFUSE_ZH if zh else REFUSE_EN), opts, None))
    return out


def lcs_f(pred: list[str], ref: list[str]) -> float:
    prev = [0] * (len(ref) + 1)
    for x in pred:
        cur = [0]
        for j, y in enumerate(ref):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if not lcs:
        return 0.0
    p, r = lcs / len(pred), lcs / len(ref)
    return 2 * p * r / (p + r)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=400)
    args = ap.parse_args()

    cs = cases()
    answerable = [c for c in cs if c[2] is not None]
    refusals = [c for c in cs if c[2] is None]
    t_ours, ours = timed(lambda: [extract_choice(t, o).letters for t, o, _ in cs], args.repeats)
    t_naive, nv = timed(lambda: [naive(t, o) for t, o, _ in cs], args.repeats)
    n_ans = len(answerable)
    ours_ok = sum(o == a for o, (_, _, a) in zip(ours, cs) if a is not None)
    naive_ok = sum(o == a for o, (_, _, a) in zip(nv, cs) if a is not None)
    ours_ref_invalid = sum(o is None for o, (_, _, a) in zip(ours, cs) if a is None)
    naive_ref_a = sum(o == "A" for o, (_, _, a) in zip(nv, cs) if a is None)
    # what a refusal is worth to each scorer on these keys: credited when the key happens to be the guess
    keys = [c[1] for c in refusals]
    print(f"extraction: {len(cs)} replies ({n_ans} answerable, {len(refusals)} refusals) from CMMLU-med + PubMedQA")
    print(f"  ours : intended letter recovered {ours_ok}/{n_ans} = {ours_ok / n_ans:.4f}; refusals invalid {ours_ref_invalid}/{len(refusals)}; "
          f"median {t_ours * 1e6 / len(cs):.1f} us/reply")
    print(f"  naive: intended letter recovered {naive_ok}/{n_ans} = {naive_ok / n_ans:.4f}; refusals guessed 'A' {naive_ref_a}/{len(refusals)}; "
          f"median {t_naive * 1e6 / len(cs):.1f} us/reply")
    print(f"  time ratio ours/naive = {t_ours / t_naive:.1f}x")
    del keys

    answers = [r["answer"] for r in load("huatuo26m_test_qa.jsonl")[: 2 * args.pairs]]
    pairs = [(answers[i], answers[i + 1]) for i in range(0, len(answers) - 1, 2)]
    t_rs, rs = timed(lambda: [rouge_l(p, r).fmeasure for p, r in pairs], args.repeats)
    toks = [(tokenize(p), tokenize(r)) for p, r in pairs]
    t_ref, ref = timed(lambda: [lcs_f(p, r) for p, r in toks], args.repeats)
    max_diff = max(abs(a - b) for a, b in zip(rs, ref))
    mean_len = statistics.fmean(len(t[0]) for t in toks)
    print(f"rouge-L (char tokens, zh): {len(pairs)} answer pairs, mean {mean_len:.0f} tokens, max |ours - reference| = {max_diff:.2e}")
    print(f"  rouge-score + CharTokenizer: median {t_rs * 1e3 / len(pairs):.3f} ms/pair (incl. tokenising)")
    print(f"  plain-Python DP reference  : median {t_ref * 1e3 / len(pairs):.3f} ms/pair (pre-tokenised)")
    print(f"  ratio ours/reference = {t_rs / t_ref:.2f}x; mean F = {statistics.fmean(rs):.4f} (default rouge-score tokenizer: 0 on Chinese)")


if __name__ == "__main__":
    main()
