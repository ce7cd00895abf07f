"""Reading import files and normalising rows into MedStudio's five record kinds (no Django).

Readers stream (bounded memory): JSONL line by line, CSV row by row, Parquet batch by batch.
Each yields (line_number, row_dict) or (line_number, RowError). `normalize_row` maps the layouts
people bring (OpenAI/TRL `messages`, ShareGPT `conversations`, Alpaca, prompt/chosen/rejected,
the shared-data schemas) onto one content schema per kind, or raises RowError with the reason.
Converting normalised records to other layouts (training, exports, scorer text) is
`medstudio.datasets.convert`.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .convert import flat_text
from .text import content_hash, text_stats

KINDS = ("document", "qa", "dialogue", "mcq", "pair")
FORMATS = ("jsonl", "csv", "parquet")


class RowError(Exception):
    """A row that cannot be imported; the message says why."""


class FileError(Exception):
    """The whole file cannot be read (empty, unknown format...)."""


@dataclass
class NormalizedRecord:
    external_id: str
    lang: str
    source: str
    subset: str
    content: dict[str, Any]
    text: str
    n_tokens: int
    text_hash: str


def detect_format(name: str) -> str:
    lower = name.lower()
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"), (".csv", "csv"),
                        (".parquet", "parquet"), (".pq", "parquet")):
        if lower.endswith(suffix):
            return fmt
    raise FileError(f"Cannot tell the format of {name!r}: use a .jsonl, .csv or .parquet file (or name the format).")


# --------------------------------------------------------------------------------------------
# readers


def iter_rows(path: str | Path, fmt: str, *, max_line_bytes: int = 16 * 1024 * 1024,
              start_line: int = 0) -> Iterator[tuple[int, dict | RowError]]:
    """Yield (line number, row or RowError), 1-based, skipping rows up to `start_line`."""
    path = Path(path)
    if fmt not in FORMATS:
        raise FileError(f"Unknown format {fmt!r}; expected one of {', '.join(FORMATS)}.")
    if not path.exists():
        raise FileError(f"No such file: {path}")
    if path.stat().st_size == 0:
        raise FileError("The file is empty.")
    reader = {"jsonl": _iter_jsonl, "csv": _iter_csv, "parquet": _iter_parquet}[fmt]
    seen = False
    for lineno, row in reader(path, max_line_bytes):
        seen = True
        if lineno > start_line:
            yield lineno, row
    if not seen:
        raise FileError("The file holds no records.")


def _iter_jsonl(path: Path, max_line_bytes: int) -> Iterator[tuple[int, dict | RowError]]:
    with path.open("rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(max_line_bytes + 1)
            if not raw:
                break
            lineno += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                # Skip the rest of the over-long line without holding it in memory.
                while raw and not raw.endswith(b"\n"):
                    raw = fh.readline(1024 * 1024)
                yield lineno, RowError(f"line is longer than {max_line_bytes} bytes")
                continue
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, RowError(f"invalid UTF-8 at byte {exc.start} of the line")
                continue
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, RowError(f"invalid JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(row, dict):
                yield lineno, RowError(f"expected a JSON object, got {type(row).__name__}")
                continue
            yield lineno, row


_JSON_COLUMNS = ("turns", "messages", "conversations", "options", "prompt_turns", "chosen", "rejected", "prompt", "meta")


def _iter_csv(path: Path, max_line_bytes: int) -> Iterator[tuple[int, dict | RowError]]:
    csv.field_size_limit(max_line_bytes)
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
        reader = csv.DictReader(text)
        rowno = 1
        try:
            for row in reader:
                rowno = reader.line_num
                if None in row:
                    yield rowno, RowError(f"row has {len(row) - 1 + len(row[None])} fields, the header has {len(reader.fieldnames or [])}")
                    continue
                yield rowno, {k: _maybe_json(k, v) for k, v in row.items() if k is not None and v != ""}
        except UnicodeDecodeError as exc:
            yield rowno + 1, RowError(f"invalid UTF-8 near row {rowno + 1} (byte {exc.start} of a block); the rest of the file cannot be read")
        except csv.Error as exc:
            yield reader.line_num, RowError(f"CSV error: {exc}")


def _maybe_json(key: str, value: str) -> Any:
    if key in _JSON_COLUMNS and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _iter_parquet(path: Path, max_line_bytes: int) -> Iterator[tuple[int, dict | RowError]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a non-parquet file
        raise FileError(f"Not a readable Parquet file: {exc}") from exc
    lineno = 0
    for batch in pf.iter_batches(batch_size=1000):
        for row in batch.to_pylist():
            lineno += 1
            yield lineno, {k: _maybe_json(k, v) if isinstance(v, str) else v for k, v in row.items() if v is not None}


# --------------------------------------------------------------------------------------------
# normalisation

_ROLE_MAP = {"user": "user", "human": "user", "patient": "user", "question": "user", "prompter": "user",
             "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
             "doctor": "assistant", "chatgpt": "assistant", "system": "system"}


def _text(value: Any, field: str) -> str:
    if value is None:
        raise RowError(f"missing field {field!r}")
    if not isinstance(value, str):
        raise RowError(f"field {field!r} must be text, got {type(value).__name__}")
    if not value.strip():
        raise RowError(f"field {field!r} is empty")
    return value


def _turns(value: Any, field: str) -> tuple[list[dict], str]:
    """Normalise a list of messages; returns (user/assistant turns, system prompt)."""
    if not isinstance(value, list):
        raise RowError(f"field {field!r} must be a list of messages, got {type(value).__name__}")
    turns: list[dict] = []
    system = ""
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise RowError(f"{field}[{i}] must be an object with role and content")
        role_raw = msg.get("role", msg.get("from"))
        content = msg.get("content", msg.get("value"))
        if not isinstance(role_raw, str):
            raise RowError(f"{field}[{i}] has no role")
        role = _ROLE_MAP.get(role_raw.strip().lower())
        if role is None:
            raise RowError(f"{field}[{i}] has unknown role {role_raw!r}")
        content = _text(content, f"{field}[{i}].content")
        if role == "system":
            system = f"{system}\n{content}".strip() if system else content
            continue
        if turns and turns[-1]["role"] == role:
            # Consecutive turns by one role are merged, as the shared data does.
            turns[-1]["content"] += "\n" + content
        else:
            turns.append({"role": role, "content": content})
    if not turns:
        raise RowError(f"field {field!r} holds no user or assistant message")
    return turns, system


def _answer_text(value: Any, field: str) -> str:
    """chosen/rejected may be a string or a (TRL conversational) list ending in an assistant turn."""
    if isinstance(value, list):
        turns, _ = _turns(value, field)
        if turns[-1]["role"] != "assistant":
            raise RowError(f"field {field!r} must end with an assistant message")
        return turns[-1]["content"]
    return _text(value, field)


def _norm_document(row: dict) -> dict:
    text = row.get("text", row.get("content", row.get("document")))
    out = {"text": _text(text, "text")}
    if row.get("title"):
        out["title"] = str(row["title"])
    return out


def _norm_qa(row: dict) -> dict:
    if "instruction" in row:  # Alpaca
        instruction = _text(row.get("instruction"), "instruction")
        extra = row.get("input") or ""
        question = f"{instruction}\n{extra}" if extra else instruction
        out = {"question": question, "answer": _text(row.get("output"), "output")}
    elif "messages" in row or "conversations" in row:
        field = "messages" if "messages" in row else "conversations"
        turns, system = _turns(row[field], field)
        if len(turns) != 2 or turns[0]["role"] != "user" or turns[1]["role"] != "assistant":
            raise RowError(f"a qa record needs exactly one user and one assistant message; got {len(turns)} turns (import it as dialogue)")
        out = {"question": turns[0]["content"], "answer": turns[1]["content"]}
        if system:
            out["system"] = system
    else:
        q = row.get("question", row.get("prompt", row.get("query")))
        a = row.get("answer", row.get("response", row.get("output")))
        out = {"question": _text(q, "question"), "answer": _text(a, "answer")}
    if row.get("system") and "system" not in out:
        out["system"] = _text(row["system"], "system")
    return out


def _norm_dialogue(row: dict) -> dict:
    for field in ("turns", "messages", "conversations"):
        if field in row:
            turns, system = _turns(row[field], field)
            break
    else:
        raise RowError("missing field 'turns' (or 'messages' / 'conversations')")
    if not any(t["role"] == "assistant" for t in turns):
        raise RowError("dialogue has no assistant turn")
    out: dict[str, Any] = {"turns": turns}
    system = system or (row.get("system") if isinstance(row.get("system"), str) else "")
    if system:
        out["system"] = system
    return out


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _norm_mcq(row: dict) -> dict:
    question = _text(row.get("question"), "question")
    options = row.get("options", row.get("choices"))
    if options is None and all(k in row for k in "ABCD"):
        options = {k: row[k] for k in _LETTERS if k in row}
    if isinstance(options, list):
        options = {_LETTERS[i]: v for i, v in enumerate(options)}
    if not isinstance(options, dict) or len(options) < 2:
        raise RowError("field 'options' must map letters to at least two options")
    options = {str(k).strip().upper(): _text(v, f"options.{k}") for k, v in options.items()}
    answer = row.get("answer", row.get("label"))
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(options):
        answer = list(options)[answer]
    if not isinstance(answer, str) or not answer.strip():
        raise RowError("missing field 'answer' (a letter such as 'B')")
    letters = answer.strip().upper().replace(",", "").replace(" ", "")
    if not letters or any(ch not in options for ch in letters):
        by_text = [k for k, v in options.items() if v.strip() == answer.strip()]
        if not by_text:
            raise RowError(f"answer {answer!r} is not one of the option letters {''.join(options)}")
        letters = by_text[0]
    out = {"question": question, "options": options, "answer": letters}
    if row.get("explanation"):
        out["explanation"] = str(row["explanation"])
    return out


def _norm_pair(row: dict) -> dict:
    prompt = row.get("prompt_turns", row.get("prompt"))
    if prompt is None:
        raise RowError("missing field 'prompt' (or 'prompt_turns')")
    if isinstance(prompt, str):
        prompt_turns, system = [{"role": "user", "content": _text(prompt, "prompt")}], ""
    else:
        prompt_turns, system = _turns(prompt, "prompt")
    system = system or (row["system"] if isinstance(row.get("system"), str) and row["system"].strip() else "")
    if system:  # the system prompt is kept as the first prompt turn (as preference pairs store it)
        prompt_turns = [{"role": "system", "content": system}] + prompt_turns
    chosen = _answer_text(row.get("chosen"), "chosen")
    rejected = _answer_text(row.get("rejected"), "rejected")
    if chosen == rejected:
        raise RowError("chosen and rejected are identical")
    return {"prompt_turns": prompt_turns, "chosen": chosen, "rejected": rejected}


_NORMALIZERS = {"document": _norm_document, "qa": _norm_qa, "dialogue": _norm_dialogue, "mcq": _norm_mcq, "pair": _norm_pair}
# Fields consumed by the normalisers (the rest goes to content["meta"]).
_CONSUMED = {"id", "source", "lang", "text", "content", "document", "title", "instruction", "input", "output",
             "messages", "conversations", "turns", "system", "question", "prompt", "query", "answer", "response",
             "options", "choices", "label", "explanation", "prompt_turns", "chosen", "rejected", "meta", *_LETTERS[:8]}


def detect_kind(row: dict) -> str:
    if "chosen" in row and "rejected" in row:
        return "pair"
    if "options" in row or "choices" in row:
        return "mcq"
    if "turns" in row or "conversations" in row or "messages" in row:
        return "dialogue"
    if ("question" in row and "answer" in row) or "instruction" in row:
        return "qa"
    if "text" in row:
        return "document"
    raise RowError("cannot tell the record kind from its fields; name the kind")


def flatten_text(kind: str, content: dict) -> str:
    """All readable text of a record, for search, token counts and text scorers (the Record.text column)."""
    if kind not in _NORMALIZERS:
        raise ValueError(kind)
    return flat_text(kind, content)


def normalize_content(row: dict, kind: str) -> tuple[str, dict]:
    """Validate and map one raw row onto the content schema of `kind` (the cheap part of a row)."""
    if kind == "auto":
        kind = detect_kind(row)
    if kind not in _NORMALIZERS:
        raise RowError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    content = _NORMALIZERS[kind](row)
    meta = dict(row["meta"]) if isinstance(row.get("meta"), dict) else {}
    meta.update({k: v for k, v in row.items() if k not in _CONSUMED})
    if meta:
        content["meta"] = meta
    for field in ("lang", "source"):
        if row.get(field) is not None and not isinstance(row[field], str):
            raise RowError(f"field {field!r} must be text, got {type(row[field]).__name__}")
    ext = row.get("id")
    if ext is not None and not isinstance(ext, (str, int)):
        raise RowError(f"field 'id' must be text or a number, got {type(ext).__name__}")
    if ext is not None and len(str(ext)) > 255:
        raise RowError("field 'id' is longer than 255 characters")
    return kind, content


def normalize_row(row: dict, kind: str) -> NormalizedRecord:
    """Map one raw row onto the content schema of `kind`; raise RowError with the reason."""
    kind, content = normalize_content(row, kind)
    text = flatten_text(kind, content)
    n_tokens, guessed = text_stats(text)
    lang = (row.get("lang") or guessed).strip().lower()[:16]
    subset = row.get("department") or row.get("subject") or row.get("domain") or ""
    chash = content_hash(content)
    ext = row.get("id")
    # Without an id, the content hash is the id, so re-importing the same file stays idempotent.
    external_id = str(ext) if ext not in (None, "") else f"sha256:{chash[:32]}"
    return NormalizedRecord(external_id=external_id, lang=lang, source=(row.get("source") or "")[:200],
                            subset=str(subset)[:200], content=content, text=text, n_tokens=n_tokens, text_hash=chash)
