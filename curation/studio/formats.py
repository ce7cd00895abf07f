"""Selection export layouts (pure Python, no Django): one function per target format.

Each converter takes a record's kind and normalised content (see ARCHITECTURE.md) and returns the
row to write, or raises `Unconvertible` with the reason (a document has no conversation, a QA item
has no rejected answer...). The export job counts skipped records per reason instead of failing.
"""
from __future__ import annotations

import json
from typing import Any

FORMATS = {
    "jsonl": "JSON lines, one normalised record per line (ids, provenance, content)",
    "parquet": "Parquet with the same columns (content as JSON text)",
    "messages": "TRL conversational SFT: {'messages': [{'role', 'content'}...]}",
    "preference": "TRL conversational preference: prompt / chosen / rejected (pair records)",
    "llamafactory": "LLaMA-Factory: data file + dataset_info.json (sharegpt, ranking, or pre-training text)",
    "text": "Plain text for CPT: one record per block, separated by a blank line",
}


class Unconvertible(ValueError):
    """This record cannot be written in this format (the message is the skip reason)."""


def _turns(turns: Any) -> list[dict[str, str]]:
    out = []
    for t in turns or []:
        role, content = t.get("role"), t.get("content")
        if role not in {"user", "assistant", "system"} or not isinstance(content, str):
            raise Unconvertible("malformed turn")
        out.append({"role": role, "content": content})
    return out


def _mcq_prompt(content: dict) -> str:
    options = "\n".join(f"{k}. {v}" for k, v in sorted((content.get("options") or {}).items()))
    return f"{content['question']}\n{options}"


def _mcq_answer(content: dict) -> str:
    letters = str(content.get("answer") or "")
    options = content.get("options") or {}
    picked = "; ".join(f"{ch}. {options[ch]}" for ch in letters if ch in options) or letters
    explanation = content.get("explanation")
    return picked + (f"\n{explanation}" if explanation else "")


def to_messages(kind: str, content: dict) -> list[dict[str, str]]:
    """The conversation a record stands for, as role/content messages (system first when present)."""
    system = content.get("system")
    head = [{"role": "system", "content": system}] if system else []
    if kind == "qa":
        return head + [{"role": "user", "content": content["question"]}, {"role": "assistant", "content": content["answer"]}]
    if kind == "dialogue":
        turns = _turns(content.get("turns"))
        if not turns or turns[-1]["role"] != "assistant":
            raise Unconvertible("dialogue does not end with an assistant turn")
        return head + turns
    if kind == "mcq":
        return head + [{"role": "user", "content": _mcq_prompt(content)}, {"role": "assistant", "content": _mcq_answer(content)}]
    if kind == "pair":
        # SFT on a pair trains on the chosen answer only
        return _turns(content.get("prompt_turns")) + [{"role": "assistant", "content": content["chosen"]}]
    raise Unconvertible(f"a {kind} has no conversation (use plain text)")


def to_preference(kind: str, content: dict) -> dict[str, Any]:
    """TRL's conversational preference layout; only pair records carry a rejected answer."""
    if kind != "pair":
        raise Unconvertible(f"a {kind} has no rejected answer (build preference pairs first)")
    prompt = _turns(content.get("prompt_turns"))
    if not prompt:
        raise Unconvertible("pair without a prompt")
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": content["chosen"]}],
        "rejected": [{"role": "assistant", "content": content["rejected"]}],
    }


def to_llamafactory(kind: str, content: dict) -> dict[str, Any]:
    """A LLaMA-Factory row: sharegpt `messages` (OpenAI tags), a ranking row for pairs, `text` for documents."""
    if kind == "document":
        return {"text": to_text(kind, content)}
    if kind == "pair":
        pref = to_preference(kind, content)
        system = [m["content"] for m in pref["prompt"] if m["role"] == "system"]
        return {
            "messages": [m for m in pref["prompt"] if m["role"] != "system"],
            "system": system[0] if system else "",
            "chosen": pref["chosen"][0],
            "rejected": pref["rejected"][0],
        }
    msgs = to_messages(kind, content)
    system = msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else ""
    return {"messages": [m for m in msgs if m["role"] != "system"], "system": system}


def llamafactory_dataset_info(name: str, file_name: str, kinds: set[str]) -> dict[str, Any]:
    """The dataset_info.json entry that tells LLaMA-Factory how to read `file_name`."""
    if kinds == {"document"}:
        return {name: {"file_name": file_name, "columns": {"prompt": "text"}}}
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    if kinds == {"pair"}:
        return {name: {"file_name": file_name, "formatting": "sharegpt", "ranking": True, "tags": tags,
                       "columns": {"messages": "messages", "system": "system", "chosen": "chosen", "rejected": "rejected"}}}
    if "document" in kinds or "pair" in kinds:
        raise Unconvertible("LLaMA-Factory needs one layout per file: do not mix documents or pairs with conversations")
    return {name: {"file_name": file_name, "formatting": "sharegpt", "tags": tags,
                   "columns": {"messages": "messages", "system": "system"}}}


def to_text(kind: str, content: dict) -> str:
    """Plain running text for continued pre-training."""
    if kind == "document":
        title, text = content.get("title") or "", content.get("text") or ""
        out = f"{title}\n{text}" if title and not text.startswith(title) else text
    else:
        out = "\n".join(m["content"] for m in to_messages(kind, content))
    if not out.strip():
        raise Unconvertible("empty text")
    return out


def to_row(record: dict[str, Any]) -> dict[str, Any]:
    """The generic JSONL/Parquet row: identifiers, provenance columns and the normalised content."""
    return {
        "record_id": record["id"],
        "external_id": record["external_id"],
        "dataset": record["dataset"],
        "kind": record["kind"],
        "lang": record["lang"],
        "source": record["source"],
        "subset": record["subset"],
        "n_tokens": record["n_tokens"],
        "text_hash": record["text_hash"],
        "content": record["content"],
    }


def dumps(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False)
