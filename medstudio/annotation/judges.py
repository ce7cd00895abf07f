"""LLM judges as annotators (plain Python, no Django import).

A judge answers the same question a clinician sees, through the shared chat client
(medstudio/inference/chat.py); its reply is validated by the same `clean_answer` a clinician's
form goes through, so a judge's label is stored exactly like a clinician's, with the model named
as the annotator and its prompt and raw reply kept beside it.

CareBot labelled DataRater and domain data by asking the same judge twice, independently
(docs/METHODS.md 1.1, 1.3): here that is two judge passes with run tags "#1" and "#2", each call a
fresh conversation with no memory of the other, which become two annotators for agreement and
consensus.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .questions import (
    LABEL, PREFERENCE, RATING, TEXT, TURN_RATING, AnswerError, canonical_to_shown, clean_answer, schema_for,
)


def record_as_text(kind: str, content: dict[str, Any], *, swapped: bool = False, limit: int = 12000) -> str:
    """What a judge reads: the record rendered the way the labelling screen shows it."""
    if kind == "dialogue" or "turns" in content:
        parts = []
        if content.get("system"):
            parts.append(f"[system] {content['system']}")
        n = 0
        for t in content.get("turns") or []:
            if t.get("role") == "assistant":
                n += 1
                parts.append(f"[assistant turn {n}] {t.get('content', '')}")
            else:
                parts.append(f"[user] {t.get('content', '')}")
        text = "\n".join(parts)
    elif kind == "pair" or "chosen" in content:
        prompt = "\n".join(f"[{t.get('role')}] {t.get('content', '')}" for t in content.get("prompt_turns") or [])
        a, b = pair_in_shown_order(content, swapped)
        text = f"{prompt}\n\n### Answer A\n{a}\n\n### Answer B\n{b}"
    elif kind == "mcq" or "options" in content:
        opts = "\n".join(f"{k}. {v}" for k, v in (content.get("options") or {}).items())
        text = f"{content.get('question', '')}\n{opts}\nAnswer: {content.get('answer', '')}"
        if content.get("explanation"):
            text += f"\nExplanation: {content['explanation']}"
    elif kind == "qa" or "question" in content:
        text = f"Question: {content.get('question', '')}\n\nAnswer: {content.get('answer', '')}"
    else:
        title = content.get("title")
        text = (f"# {title}\n\n" if title else "") + str(content.get("text", ""))
    return text if len(text) <= limit else text[:limit] + "\n[...truncated]"


def pair_in_shown_order(content: dict[str, Any], swapped: bool) -> tuple[str, str]:
    a, b = content.get("chosen", ""), content.get("rejected", "")
    return (b, a) if swapped else (a, b)


def _instructions(kind: str, schema: dict[str, Any]) -> tuple[str, str]:
    s = schema_for(kind, schema)
    if kind == RATING:
        lo, hi = s["scale"]
        aspects = ", ".join(s["aspects"])
        return (
            f"Rate the overall quality of the text for training a medical language model on a {lo}-{hi} scale "
            f"({hi} = excellent), considering grammatical accuracy, information density, semantic consistency "
            f"and domain relevance. Adverts, marketing, spliced unrelated text and image/video captions score low. "
            f"Also rate each aspect ({aspects}) on the same scale.",
            json.dumps({"score": hi, "aspects": {a: hi for a in s["aspects"]}}),
        )
    if kind == LABEL:
        return (f"Classify the domain of the text. Choose exactly one label from: {', '.join(s['labels'])}.",
                json.dumps({"label": s["labels"][0]}))
    if kind == TURN_RATING:
        lo, hi = s["scale"]
        return (
            f"Rate every assistant turn of the dialogue on {', '.join(s['aspects'])}, each {lo}-{hi}. "
            f"Give one object per assistant turn, in order.",
            json.dumps({"turns": [{a: hi for a in s["aspects"]}]}),
        )
    if kind == PREFERENCE:
        return (
            "Compare answer A and answer B as a professional and helpful doctor would, on fluency, relevance, "
            "completeness and medical proficiency. Say which answer is better overall (\"A\", \"B\" or \"tie\") "
            "and which is better on each aspect.",
            json.dumps({"winner": "A", "aspects": {a: "A" for a in s["aspects"]}}),
        )
    raise AnswerError(f"a judge cannot answer {kind!r} questions")


def build_messages(kind: str, schema: dict[str, Any], record_kind: str, content: dict[str, Any], *,
                   swapped: bool = False) -> list[dict[str, str]]:
    """One self-contained conversation per item (no shared history between items or passes)."""
    if kind == TEXT:
        raise AnswerError("a judge cannot answer free-text questions")
    task, example = _instructions(kind, schema)
    system = ("You are a careful medical data annotator. Reply with one JSON object only, "
              f"shaped like this example: {example}")
    user = f"{task}\n\n---\n{record_as_text(record_kind, content, swapped=swapped)}\n---"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


@dataclass
class JudgeLabel:
    values: dict[str, Any]  # canonical, as clean_answer returns
    raw: str


def parse_reply(kind: str, schema: dict[str, Any], text: str, *, content: dict[str, Any], swapped: bool = False) -> dict[str, Any]:
    """Turn a judge's reply into canonical values, or raise AnswerError / ChatError saying why."""
    from medstudio.inference.chat import parse_json_object

    obj = parse_json_object(text)
    if kind == RATING and "score" in obj:
        # Judges often answer 4.0 for 4; anything non-integral is rejected by clean_answer.
        obj = dict(obj)
        obj["score"] = _intish(obj["score"])
        if isinstance(obj.get("aspects"), dict):
            obj["aspects"] = {k: _intish(v) for k, v in obj["aspects"].items()}
    if kind == TURN_RATING and isinstance(obj.get("turns"), list):
        obj = {"turns": [{k: _intish(v) for k, v in t.items()} if isinstance(t, dict) else t for t in obj["turns"]]}
    if kind == PREFERENCE:
        obj = dict(obj)
        obj["winner"] = _shown(obj.get("winner"))
        if isinstance(obj.get("aspects"), dict):
            obj["aspects"] = {k: _shown(v) for k, v in obj["aspects"].items()}
    return clean_answer(kind, schema, obj, content=content, swapped=swapped)


def _intish(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _shown(v: Any) -> Any:
    if isinstance(v, str):
        t = v.strip()
        if t.upper() in ("A", "B"):
            return t.upper()
        if t.lower() in ("tie", "t", "equal", "same"):
            return "tie"
    return v


def shown_winner(values: dict[str, Any], swapped: bool) -> str | None:
    w = values.get("winner")
    return canonical_to_shown(w, swapped) if w else None
