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
_WORD_RE = re.compile(rf"[^\s\W{_CJK}]+")


def text_stats(text: str) -> tuple[int, str]:
    """(token count, language guess) in one pass over the text."""
    text = text or ""
    cjk = len(_CJK_RE.findall(text))
    words = _WORD_RE.findall(text)
    n_tokens = cjk + len(words)
    latin = sum(map(len, words))  # digits count as letters here: close enough to tell zh from en
    if not cjk and not latin:
        return n_tokens, "und"
    # 'zh' when CJK characters make up at least 20% of the letters.
    return n_tokens, "zh" if cjk / (cjk + latin) >= 0.2 else "en"


def count_tokens(text: str) -> int:
    return text_stats(text)[0]


def guess_lang(text: str) -> str:
    return text_stats(text)[1]


def content_hash(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
