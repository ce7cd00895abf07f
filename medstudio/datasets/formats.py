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
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .convert import flat_text
from .text import content_dumps, text_stats

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
    n_nul: int = 0  # NUL characters stripped from the row (PostgreSQL cannot store them)
    content_json: str = ""  # `content` as the JSON that text_hash was computed from (the COPY sends it as is)


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


def count_rows(path: str | Path, fmt: str) -> int:
    """About how many rows the file holds, cheaply (no parsing): an upper bound for JSONL and CSV
    (its newlines; CSV counts its header and any quoted newline too), exact for Parquet; 0 when
    the file cannot be read (the import's own pass says why)."""
    path = Path(path)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        n, last = 0, b"\n"
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                n += chunk.count(b"\n")
                last = chunk[-1:]
        return n + (last != b"\n")
    except Exception:  # any unreadable file: the estimate is only used for progress and the index decision
        return 0


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
            if "\x00" in line:
                # A raw NUL byte is not valid inside a JSON string; as an escape it reaches the
                # normaliser, which strips and counts it like an escaped one (outside a string it
                # still makes the line invalid JSON).
                line = line.replace("\x00", "\\u0000")
            try:
                row = json.loads(line, parse_constant=_no_constant)
            except json.JSONDecodeError as exc:
                yield lineno, RowError(f"invalid JSON: {exc.msg} at column {exc.colno}")
                continue
            except ValueError as exc:  # from _no_constant
                yield lineno, RowError(f"invalid JSON: {exc}")
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
    meta = pf.schema_arrow.metadata or {}
    json_columns = set(meta[PARQUET_JSON_COLUMNS_KEY].decode().split(",")) if PARQUET_JSON_COLUMNS_KEY in meta else None
    lineno = 0
    for batch in pf.iter_batches(batch_size=1000):
        for row in batch.to_pylist():
            lineno += 1
            if json_columns is None:  # a file from elsewhere: decode JSON-looking text in the usual columns
                yield lineno, {k: _maybe_json(k, v) if isinstance(v, str) else v for k, v in row.items() if v is not None}
                continue
            out: dict = {}
            try:
                for k, v in row.items():
                    if v is not None:
                        out[k] = json.loads(v) if k in json_columns and isinstance(v, str) else v
            except json.JSONDecodeError as exc:
                yield lineno, RowError(f"column {k!r} is not valid JSON: {exc.msg}")
                continue
            yield lineno, out


# A MedStudio Parquet export names (comma-separated) the columns it wrote as JSON text, so reading
# it back decodes exactly those (a text answer that happens to start with "[" stays text).
PARQUET_JSON_COLUMNS_KEY = b"medstudio.json_columns"


# --------------------------------------------------------------------------------------------
# normalisation

# Role names people use, mapped onto user / assistant / system (documented in README, "Data in and out").
_ROLE_MAP = {"user": "user", "human": "user", "patient": "user", "question": "user", "prompter": "user",
             "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
             "doctor": "assistant", "chatgpt": "assistant", "system": "system"}


# ---- cleaning: what neither database can store -----------------------------------------------
# PostgreSQL text and jsonb cannot hold NUL (U+0000); neither database (nor the UTF-8 encoder)
# takes a lone surrogate (an unpaired "\ud800" escape in JSON). NULs are stripped and counted (a
# NUL is never meaningful text); a lone surrogate makes the line bad. This runs inside the
# normaliser, so SQLite and PostgreSQL import exactly the same records.


class _Surrogate(Exception):
    pass


def _clean(value: Any, counter: list[int]) -> Any:
    # Hot path (every field of every imported row): no path strings here; the field is located
    # by `_surrogate_path` only when a row turns out bad.
    if isinstance(value, str):
        if "\x00" in value:
            counter[0] += value.count("\x00")
            value = value.replace("\x00", "")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _Surrogate from None
        return value
    if isinstance(value, dict):
        return {_clean(k, counter) if isinstance(k, str) else k: _clean(v, counter) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, counter) for v in value]
    return value


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Surrogate from None
    return True


def _surrogate_path(value: Any, path: str = "") -> tuple[str, str] | None:
    """(field path, the offending character) of the first lone surrogate in `value`."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return path, value[exc.start]
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _surrogate_path(v, f"{path}[{k}]" if isinstance(value, list) else (f"{path}.{k}" if path else str(k)))
        if found:
            return found
    return None


def clean_row(row: dict) -> tuple[dict, int]:
    """(the row without NUL characters, how many were stripped); RowError on a lone surrogate."""
    counter = [0]
    try:
        # Top-level text fields inline (most rows are flat): one function call per row, not per field.
        if not all(type(k) is str and k.isascii() and "\x00" not in k for k in row):
            return _clean(row, counter), counter[0]
        out = {}
        for k, v in row.items():
            if type(v) is str and "\x00" not in v and (v.isascii() or _encodes(v)):
                out[k] = v
            else:
                out[k] = _clean(v, counter)
        return out, counter[0]
    except _Surrogate:
        path, char = _surrogate_path(row) or ("?", "?")
        raise RowError(f"field {path!r} holds an unpaired surrogate (\\u{ord(char):04x}), "
                       "which is not valid Unicode") from None


# ---- per-kind normalisers -------------------------------------------------------------------
# Each reads the fields it uses through `_Fields`, which remembers them: every field a normaliser
# did not use is kept in content["meta"] (so nothing in a row is silently dropped, e.g. a QA
# row's `title`), and export writes meta back as fields, so files round-trip.


class _Fields:
    def __init__(self, row: dict):
        self.row = row
        self.used: set[str] = {"id", "source", "lang", "meta"}

    def __contains__(self, key: str) -> bool:
        return key in self.row

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.row.get(key, default)

    def first(self, *keys: str) -> Any:
        """The value of the first of `keys` the row has (not null); only that field counts as used."""
        for k in keys:
            if self.row.get(k) is not None:
                self.used.add(k)
                return self.row[k]
        return None


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


def _roles_seen(value: list) -> str:
    names = []
    for msg in value:
        r = msg.get("role", msg.get("from")) if isinstance(msg, dict) else None
        if isinstance(r, str) and r not in names:
            names.append(r)
    return ", ".join(repr(n) for n in names)


def _no_user_turn(field: str, value: list) -> RowError:
    return RowError(f"{field!r} has no user turn: every turn maps to the assistant (roles {_roles_seen(value)}; "
                    "user roles are user, human, patient, question, prompter)")


def _system(f: _Fields, found: str = "") -> str:
    """The system prompt found in the messages, else the row's `system` text field (any kind may
    carry one: a diversified record keeps its drawn instruction there). A `system` field that is
    not text is left to meta."""
    value = f.row.get("system")
    if not isinstance(value, str):
        return found
    f.used.add("system")
    return found or (value if value.strip() else "")


def _answer_text(value: Any, field: str) -> str:
    """chosen/rejected may be a string or a (TRL conversational) list ending in an assistant turn."""
    if isinstance(value, list):
        turns, _ = _turns(value, field)
        if turns[-1]["role"] != "assistant":
            raise RowError(f"field {field!r} must end with an assistant message")
        return turns[-1]["content"]
    return _text(value, field)


def _norm_document(f: _Fields) -> dict:
    out = {"text": _text(f.first("text", "content", "document"), "text")}
    if f.get("title"):
        out["title"] = str(f.row["title"])
    if system := _system(f):
        out["system"] = system
    return out


def _norm_qa(f: _Fields) -> dict:
    if "instruction" in f:  # Alpaca
        instruction = _text(f.get("instruction"), "instruction")
        extra = f.get("input") or ""
        question = f"{instruction}\n{extra}" if extra else instruction
        out = {"question": question, "answer": _text(f.get("output"), "output")}
        found = ""
    elif "messages" in f or "conversations" in f:
        field = "messages" if "messages" in f else "conversations"
        turns, found = _turns(f.get(field), field)
        if len(turns) != 2 or turns[0]["role"] != "user" or turns[1]["role"] != "assistant":
            raise RowError(f"a qa record needs exactly one user and one assistant message; got {len(turns)} turns (import it as dialogue)")
        out = {"question": turns[0]["content"], "answer": turns[1]["content"]}
    else:
        q = f.first("question", "prompt", "query")
        a = f.first("answer", "response", "output")
        out = {"question": _text(q, "question"), "answer": _text(a, "answer")}
        found = ""
    if system := _system(f, found):
        out["system"] = system
    return out


def _norm_dialogue(f: _Fields) -> dict:
    for field in ("turns", "messages", "conversations"):
        if field in f:
            raw = f.get(field)
            turns, found = _turns(raw, field)
            break
    else:
        raise RowError("missing field 'turns' (or 'messages' / 'conversations')")
    if not any(t["role"] == "user" for t in turns):
        raise _no_user_turn(field, raw)
    if not any(t["role"] == "assistant" for t in turns):
        raise RowError("dialogue has no assistant turn")
    first_user = next(i for i, t in enumerate(turns) if t["role"] == "user")
    if not any(t["role"] == "assistant" for t in turns[first_user:]):
        raise RowError("dialogue has no user turn answered by an assistant turn")
    out: dict[str, Any] = {"turns": turns}
    if system := _system(f, found):
        out["system"] = system
    return out


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _norm_mcq(f: _Fields) -> dict:
    question = _text(f.get("question"), "question")
    options = f.first("options", "choices")
    if options is None and all(k in f for k in "ABCD"):
        options = {k: f.get(k) for k in _LETTERS if k in f}
    if isinstance(options, list):
        options = {_LETTERS[i]: v for i, v in enumerate(options)}
    if not isinstance(options, dict) or len(options) < 2:
        raise RowError("field 'options' must map letters to at least two options")
    options = {str(k).strip().upper(): _text(v, f"options.{k}") for k, v in options.items()}
    answer = f.first("answer", "label")
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
    if f.get("explanation"):
        out["explanation"] = str(f.row["explanation"])
    if system := _system(f):
        out["system"] = system
    return out


def _norm_pair(f: _Fields) -> dict:
    prompt = f.first("prompt_turns", "prompt")
    if prompt is None:
        raise RowError("missing field 'prompt' (or 'prompt_turns')")
    if isinstance(prompt, str):
        prompt_turns, found = [{"role": "user", "content": _text(prompt, "prompt")}], ""
    else:
        prompt_turns, found = _turns(prompt, "prompt")
        if not any(t["role"] == "user" for t in prompt_turns):
            raise _no_user_turn("prompt", prompt)
    system = _system(f, found)
    if system:  # the system prompt is kept as the first prompt turn (as preference pairs store it)
        prompt_turns = [{"role": "system", "content": system}] + prompt_turns
    chosen = _answer_text(f.get("chosen"), "chosen")
    rejected = _answer_text(f.get("rejected"), "rejected")
    if chosen == rejected:
        raise RowError("chosen and rejected are identical")
    return {"prompt_turns": prompt_turns, "chosen": chosen, "rejected": rejected}


_NORMALIZERS = {"document": _norm_document, "qa": _norm_qa, "dialogue": _norm_dialogue, "mcq": _norm_mcq, "pair": _norm_pair}
# Record.subset: the first of these a row has (as a field, or inside its `meta`).
SUBSET_FIELDS = ("department", "subject", "domain")


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


@dataclass
class CheckedRow:
    """The cheap part of normalising a row (what validation needs): no text stats."""

    kind: str
    content: dict[str, Any]
    row: dict  # the cleaned row
    external_id: str
    content_hash: str  # "" until needed when the row has its own id (record_from_checked computes it)
    n_nul: int  # NUL characters stripped
    content_json: str = ""  # the canonical JSON content_hash was computed from, when it was


_ALWAYS_USED = frozenset(("id", "source", "lang", "meta"))


_NON_FINITE_FIX = "write null, or the number as text"


def _no_constant(name: str):
    """json.loads's parse_constant: the stdlib reads NaN and Infinity, which are not JSON and which
    neither database stores (SQLite's insert would even drop the row without a word)."""
    raise ValueError(f"{name} is not a JSON value ({_NON_FINITE_FIX})")


def content_dumps_checked(content: dict) -> str:
    """content_dumps, with a NaN or infinite number (a Parquet float column) as the row's error."""
    try:
        return content_dumps(content)
    except ValueError:
        raise RowError(f"the row holds NaN or Infinity, which JSON cannot store ({_NON_FINITE_FIX})") from None


def check_row(row: dict, kind: str) -> CheckedRow:
    """Clean, validate and map one raw row onto the content schema of `kind`; RowError says why not."""
    row, n_nul = clean_row(row)
    if kind == "auto":
        kind = detect_kind(row)
    normalizer = _NORMALIZERS.get(kind)
    if normalizer is None:
        raise RowError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    fields = _Fields(row)
    content = normalizer(fields)
    used = fields.used
    raw_meta = row.get("meta")
    extra = [k for k in row if k not in used]
    if extra or isinstance(raw_meta, dict) and raw_meta:
        meta = dict(raw_meta) if isinstance(raw_meta, dict) else {}
        for k in extra:
            meta[k] = row[k]
        if meta:
            content["meta"] = meta
    for field in ("lang", "source"):
        value = row.get(field)
        if value is not None and not isinstance(value, str):
            raise RowError(f"field {field!r} must be text, got {type(value).__name__}")
    ext = row.get("id")
    if ext is None or ext == "":
        # Without an id, the content hash is the id, so re-importing the same file stays idempotent.
        content_json = content_dumps_checked(content)
        chash = hashlib.sha256(content_json.encode()).hexdigest()
        return CheckedRow(kind=kind, content=content, row=row, external_id=f"sha256:{chash[:32]}", content_hash=chash,
                          n_nul=n_nul, content_json=content_json)
    if type(ext) is str:
        external_id = ext
    elif isinstance(ext, (str, int)):
        external_id = str(ext)
    else:
        raise RowError(f"field 'id' must be text or a number, got {type(ext).__name__}")
    if len(external_id) > 255:
        raise RowError("field 'id' is longer than 255 characters")
    # With an id, the hash waits until the record is built (`record_from_checked`): validation skips it.
    return CheckedRow(kind=kind, content=content, row=row, external_id=external_id, content_hash="", n_nul=n_nul)


def normalize_content(row: dict, kind: str) -> tuple[str, dict]:
    """Validate and map one raw row onto the content schema of `kind` (the cheap part of a row)."""
    checked = check_row(row, kind)
    return checked.kind, checked.content


def record_subset(content: dict) -> str:
    """Record.subset from a record's content: its department, subject or domain (kept in meta)."""
    meta = content.get("meta") if isinstance(content.get("meta"), dict) else {}
    for k in SUBSET_FIELDS:
        if meta.get(k) not in (None, ""):
            return str(meta[k])[:200]
    return ""


def record_from_checked(c: CheckedRow) -> NormalizedRecord:
    """The stored record of a checked row: canonical JSON, its hash, flat text, token count, language."""
    content = c.content
    content_json = c.content_json or content_dumps_checked(content)
    text_hash = c.content_hash or hashlib.sha256(content_json.encode()).hexdigest()  # == content_hash(content)
    if c.kind == "document":  # the most common kind, inline: what flat_text gives ("title\ntext", no empty parts)
        title = content.get("title")
        text = f"{title}\n{content['text']}" if title else content["text"]
    else:
        text = flat_text(c.kind, content)
    n_tokens, guessed = text_stats(text)
    row = c.row
    lang = row.get("lang") or guessed
    if not (lang.islower() and len(lang) <= 16 and lang.isascii() and lang.isalpha()):
        lang = lang.strip().lower()[:16]
    source = row.get("source") or ""
    return NormalizedRecord(external_id=c.external_id, lang=lang, source=source if len(source) <= 200 else source[:200],
                            subset=record_subset(content) if "meta" in content else "", content=content, text=text,
                            n_tokens=n_tokens, text_hash=text_hash, n_nul=c.n_nul, content_json=content_json)


def normalize_row(row: dict, kind: str) -> NormalizedRecord:
    """Map one raw row onto the content schema of `kind`; raise RowError with the reason."""
    return record_from_checked(check_row(row, kind))
