"""The one record converter: a normalised record ({kind, content}) -> every target layout.

Plain Python, no Django import: the training process (training/pipeline/train.py) runs without
Django and imports this module; the studio export job, the curation scorers and the dataset
reader (`formats.flatten_text`) use it too. Reading and normalising import files stays in
`medstudio.datasets.formats` (the `_norm_*` functions define the content schema per kind):

  document  {text, title?}
  qa        {question, answer, system?}
  dialogue  {turns: [{role: user|assistant, content}], system?}
  mcq       {question, options: {letter: text}, answer: letters, explanation?}
  pair      {prompt_turns: [{role, content}] (system first when present), chosen, rejected}

Any kind may also carry `meta` (the row's extra fields, never converted) and `system` (a
diversified SFT record carries its drawn instruction there).

Targets, each raising `Unconvertible` (a ValueError whose message is the skip reason) where the
record cannot be written in that layout:

  to_text          plain running text for continued pre-training (CPT)
  to_messages      chat messages for SFT (TRL conversational `messages`)
  to_preference    prompt / chosen / rejected (TRL conversational preference), pairs only
  to_llamafactory  a LLaMA-Factory row, with `llamafactory_dataset_info` for dataset_info.json
  to_row           the studio's generic JSONL/Parquet row (ids, provenance, nested content)
  to_flat_row      the shared-data import schema (flat fields); `normalize_row` reads it back
  text_fields      the readable text fields, for text scorers (rules, decontamination)
  flat_text        all readable text in one string (the Record.text column)

Decisions, where the four earlier copies disagreed:

* System prompt. `content["system"]` (qa, dialogue, a diversified record of any kind) and any
  system turn inside `turns` / `prompt_turns` become ONE leading system message (joined by a
  newline, in that order). It is never part of `text_fields` / `flat_text` (it is an instruction,
  not the record's text) nor of the CPT text.
* Conversation shape. After the optional system message, roles alternate user/assistant,
  starting with user and ending with assistant (what chat templates and LLaMA-Factory's sharegpt
  reader require). Consecutive turns by one role are merged with a newline (the reader's rule).
  A dialogue is cut to start at its first user turn and to end at its last assistant turn
  (trailing unanswered user turns are dropped rather than the whole dialogue); with no
  user-then-assistant exchange it is Unconvertible. A malformed turn is Unconvertible.
* MCQ as SFT: user = the question, then one line per option "A. text" in letter order;
  assistant = the answer letter(s) with the option text ("B. no", several joined by "; "),
  then the explanation on a new line when present. (The training copy wrote the bare letter.)
  The row's extras (`meta`, e.g. PubMedQA's context) are not added to the prompt.
* Pair as SFT: the prompt turns followed by the chosen answer (the rejected answer is never
  trained on). The prompt is cut to start at its first user turn and must end with a user
  turn, else Unconvertible. (The training copy skipped pairs.)
* Pair as CPT text: prompt + chosen, like SFT. (The training copy skipped pairs; `flat_text`,
  which is for search and counts, keeps the rejected answer too.)
* CPT text: a document is "title\\ntext" unless the text already starts with its title; a
  conversation is its message contents joined by newlines without role labels and without the
  system prompt, or `render(messages)` when a renderer (a chat template) is given, in which case
  the system message is included. (The training copy always prefixed the title and wrote
  "role: content" lines.)
* Preference: only pairs; the prompt is the system message (if any) plus the prompt turns,
  chosen and rejected are one-message assistant lists (TRL conversational). A qa / mcq /
  dialogue needs a pair built first (preferences app).
* Text for scorers: `text_fields` lists the readable fields in reading order, options as bare
  text; `flat_text` joins them with newlines, writing MCQ options as "A. text" in their stored
  order (the Record.text column, unchanged from `formats.flatten_text`). Both are lenient: a
  missing field is left out, never an error (scorers run on whatever content is stored).
"""
from __future__ import annotations

import json
from typing import Any, Callable

KINDS = ("document", "qa", "dialogue", "mcq", "pair")

EXPORT_FORMATS = {
    "jsonl": "JSON lines, one normalised record per line (ids, provenance, content)",
    "parquet": "Parquet with the same columns (content as JSON text)",
    "messages": "TRL conversational SFT: {'messages': [{'role', 'content'}...]}",
    "preference": "TRL conversational preference: prompt / chosen / rejected (pair records)",
    "llamafactory": "LLaMA-Factory: data file + dataset_info.json (sharegpt, ranking, or pre-training text)",
    "text": "Plain text for CPT: one record per block, separated by a blank line",
}

Message = dict[str, str]


class Unconvertible(ValueError):
    """This record cannot be written in this layout (the message is the skip reason)."""


# --------------------------------------------------------------------------------------------
# helpers


def _field(content: dict, name: str) -> str:
    value = content.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Unconvertible(f"missing field {name!r}")
    return value


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise Unconvertible(f"unknown record kind {kind!r}")


def _split_turns(turns: Any, name: str) -> tuple[list[str], list[Message]]:
    """(system texts, user/assistant turns with consecutive same-role turns merged)."""
    if not isinstance(turns, list) or not turns:
        raise Unconvertible(f"missing field {name!r}")
    systems: list[str] = []
    out: list[Message] = []
    for t in turns:
        role = t.get("role") if isinstance(t, dict) else None
        text = t.get("content") if isinstance(t, dict) else None
        if role not in ("user", "assistant", "system") or not isinstance(text, str) or not text.strip():
            raise Unconvertible("malformed turn")
        if role == "system":
            systems.append(text)
        elif out and out[-1]["role"] == role:
            out[-1] = {"role": role, "content": out[-1]["content"] + "\n" + text}
        else:
            out.append({"role": role, "content": text})
    return systems, out


def _system_message(content: dict, extra: list[str] = ()) -> list[Message]:
    parts: list[str] = []
    system = content.get("system")
    if isinstance(system, str) and system.strip():
        parts.append(system)
    for s in extra:
        if s not in parts:
            parts.append(s)
    return [{"role": "system", "content": "\n".join(parts)}] if parts else []


def _mcq(content: dict) -> tuple[str, str]:
    question = _field(content, "question")
    options = content.get("options")
    if not isinstance(options, dict) or len(options) < 2:
        raise Unconvertible("mcq without options")
    options = {str(k): str(v) for k, v in options.items()}
    letters = str(content.get("answer") or "").strip()
    if not letters or any(ch not in options for ch in letters):
        raise Unconvertible(f"mcq answer {letters!r} is not one of the options {''.join(sorted(options))}")
    prompt = question + "\n" + "\n".join(f"{k}. {v}" for k, v in sorted(options.items()))
    answer = "; ".join(f"{ch}. {options[ch]}" for ch in letters)
    explanation = content.get("explanation")
    if isinstance(explanation, str) and explanation.strip():
        answer += "\n" + explanation
    return prompt, answer


def _pair_prompt(content: dict) -> list[Message]:
    """System message (if any) + the prompt turns, which start at a user turn and end with one."""
    systems, turns = _split_turns(content.get("prompt_turns"), "prompt_turns")
    while turns and turns[0]["role"] != "user":
        turns = turns[1:]
    if not turns:
        raise Unconvertible("pair without a user prompt")
    if turns[-1]["role"] != "user":
        raise Unconvertible("pair prompt does not end with a user turn")
    return _system_message(content, systems) + turns


# --------------------------------------------------------------------------------------------
# targets


def to_messages(kind: str, content: dict) -> list[Message]:
    """The conversation a record stands for (SFT): optional system, then user/assistant turns."""
    _check_kind(kind)
    if kind == "qa":
        return _system_message(content) + [{"role": "user", "content": _field(content, "question")},
                                           {"role": "assistant", "content": _field(content, "answer")}]
    if kind == "dialogue":
        systems, turns = _split_turns(content.get("turns"), "turns")
        first_user = next((i for i, t in enumerate(turns) if t["role"] == "user"), None)
        last_assistant = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
        if first_user is None or last_assistant is None or last_assistant < first_user:
            raise Unconvertible("dialogue has no user turn answered by an assistant turn")
        return _system_message(content, systems) + turns[first_user:last_assistant + 1]
    if kind == "mcq":
        prompt, answer = _mcq(content)
        return _system_message(content) + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    if kind == "pair":
        # SFT on a pair trains on the chosen answer only.
        return _pair_prompt(content) + [{"role": "assistant", "content": _field(content, "chosen")}]
    raise Unconvertible(f"a {kind} has no conversation (use plain text)")


def to_preference(kind: str, content: dict) -> dict[str, Any]:
    """TRL's conversational preference layout; only pair records carry a rejected answer."""
    _check_kind(kind)
    if kind != "pair":
        raise Unconvertible(f"a {kind} has no rejected answer (build preference pairs first)")
    return {
        "prompt": _pair_prompt(content),
        "chosen": [{"role": "assistant", "content": _field(content, "chosen")}],
        "rejected": [{"role": "assistant", "content": _field(content, "rejected")}],
    }


def to_text(kind: str, content: dict, render: Callable[[list[Message]], str] | None = None) -> str:
    """Plain running text for continued pre-training; `render` (a chat template) for conversations."""
    _check_kind(kind)
    if kind == "document":
        text = _field(content, "text")
        title = content.get("title") if isinstance(content.get("title"), str) else ""
        out = f"{title}\n{text}" if title.strip() and not text.startswith(title) else text
    else:
        msgs = to_messages(kind, content)
        out = render(msgs) if render is not None else "\n".join(m["content"] for m in msgs if m["role"] != "system")
    if not out or not out.strip():
        raise Unconvertible("empty text")
    return out


def to_llamafactory(kind: str, content: dict) -> dict[str, Any]:
    """A LLaMA-Factory row: sharegpt `messages` (OpenAI tags), a ranking row for pairs, `text` for documents."""
    _check_kind(kind)
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


def to_row(record: dict[str, Any]) -> dict[str, Any]:
    """The studio's generic JSONL/Parquet row: identifiers, provenance columns and the normalised content."""
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


def to_flat_row(kind: str, content: dict, *, id: Any = None, source: str | None = None,
                lang: str | None = None) -> dict[str, Any]:
    """The shared-data import schema: id, source, lang, the kind's fields, then the extra fields.

    `formats.normalize_row(to_flat_row(kind, c, ...), kind).content == c` for normalised content.
    """
    _check_kind(kind)
    row: dict[str, Any] = {k: v for k, v in (("id", id), ("source", source), ("lang", lang)) if v is not None}
    body = dict(content)
    meta = body.pop("meta", None) or {}
    row.update(body)
    nested: dict[str, Any] = {}
    for k, v in meta.items():
        # An extra field goes back beside the content fields (the shared-data schema), unless the
        # reader would take it for a content field or it collides with one: those stay in `meta`,
        # which the reader merges back, so the round trip is lossless either way.
        if k in row or k in READER_FIELDS:
            nested[k] = v
        else:
            row[k] = v
    if nested:
        row["meta"] = nested
    return row


# Every field name the reader (`formats.normalize_row`) may take as content or provenance, for
# any kind (a row's other fields are its extras, kept in content["meta"]). `title` is left out:
# only documents read it, and other kinds keep it among their extras.
READER_FIELDS = frozenset({
    "id", "source", "lang", "meta", "system", "text", "content", "document", "instruction", "input", "output",
    "messages", "conversations", "turns", "question", "prompt", "query", "answer", "response", "options",
    "choices", "label", "explanation", "prompt_turns", "chosen", "rejected", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
})


def dumps(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# text for scorers and search


def _fields(kind: str, content: dict, *, lettered: bool) -> list[str]:
    def s(name: str) -> str:
        v = content.get(name)
        return v if isinstance(v, str) else ("" if v is None else str(v))

    def turn_texts(name: str) -> list[str]:
        turns = content.get(name)
        return [str(t.get("content") or "") for t in turns if isinstance(t, dict) and t.get("role") != "system"] \
            if isinstance(turns, list) else []

    fields: list[str] = []
    if kind == "document":
        fields += [s("title"), s("text")]
    elif kind == "qa":
        fields += [s("question"), s("answer")]
    elif kind == "mcq":
        options = content.get("options") if isinstance(content.get("options"), dict) else {}
        fields.append(s("question"))
        fields += [f"{k}. {v}" if lettered else str(v) for k, v in options.items()]
        fields.append(s("explanation"))
    elif kind == "dialogue":
        fields += turn_texts("turns")
    elif kind == "pair":
        fields += turn_texts("prompt_turns") + [s("chosen"), s("rejected")]
    return [f for f in fields if f]


def text_fields(kind: str, content: dict) -> list[str]:
    """The readable text fields of a record, in reading order (no system prompt, options as bare text)."""
    return _fields(kind, content or {}, lettered=False)


def flat_text(kind: str, content: dict) -> str:
    """All readable text of a record in one string (the Record.text column: search, token counts)."""
    return "\n".join(_fields(kind, content or {}, lettered=True))
