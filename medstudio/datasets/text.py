"""Text helpers with no Django import: CJK-aware token counts, language guess, content hashing."""
from __future__ import annotations

import hashlib
import json
import re

# CJK ideographs (incl. extension A and compatibility), kana and hangul count one token per
# character, close to what BPE tokenizers of Chinese-capable models produce on average; every run
# of other letters/digits is one token. Two single-class regexes (no alternation) keep this fast.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK}]")
_WORD_RE = re.compile(rf"[^\s\W{_CJK}]+")  # the definition of a word; text_stats counts the same faster
_CJK_RUN_RE = re.compile(f"[{_CJK}]+")
_UWORD_RE = re.compile(r"\w+")
# ASCII text: every word character (\w: letters, digits, _) becomes "a", everything else a space.
_ASCII_CLASSES = bytes(ord("a") if (chr(i).isalnum() or chr(i) == "_") else ord(" ") for i in range(128)) + b" " * 128


def text_stats(text: str) -> tuple[int, str]:
    """(token count, language guess): CJK characters plus runs of other word characters.

    The same counts as `len(_CJK_RE.findall(text)) + len(_WORD_RE.findall(text))`, about 8x
    faster: ASCII text is mapped to two byte classes in C (bytes.translate) and counted there;
    other text has its CJK runs measured and blanked, then plain \w runs counted.
    """
    text = text or ""
    if text.isascii():
        classes = text.encode("ascii").translate(_ASCII_CLASSES)
        cjk = 0
        latin = classes.count(b"a")
        n_words = classes.count(b" a") + (classes[:1] == b"a")
    else:
        runs = _CJK_RUN_RE.findall(text)
        cjk = sum(map(len, runs))
        words = _UWORD_RE.findall(_CJK_RUN_RE.sub(" ", text) if runs else text)
        n_words = len(words)
        latin = sum(map(len, words))  # digits count as letters here: close enough to tell zh from en
    n_tokens = cjk + n_words
    if not cjk and not latin:
        return n_tokens, "und"
    # 'zh' when CJK characters make up at least 20% of the letters.
    return n_tokens, "zh" if cjk / (cjk + latin) >= 0.2 else "en"


def count_tokens(text: str) -> int:
    return text_stats(text)[0]


def guess_lang(text: str) -> str:
    return text_stats(text)[1]


# One encoder for every row: json.dumps with non-default options builds a new JSONEncoder per call.
# allow_nan=False: NaN and Infinity are not JSON, and both databases refuse them (SQLite's
# JSON_VALID check, PostgreSQL's jsonb), so they are refused here, where the row is still known.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, allow_nan=False)


def content_dumps(content: dict) -> str:
    """The canonical JSON of a record's content (what content_hash hashes); ValueError on a NaN
    or an infinite number."""
    return _CANONICAL.encode(content)


def content_hash(content: dict) -> str:
    return hashlib.sha256(content_dumps(content).encode()).hexdigest()
