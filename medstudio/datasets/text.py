"""Text helpers with no Django import: CJK-aware token counts, language guess, content hashing."""
from __future__ import annotations

import hashlib
import json
import re

# CJK ideographs (incl. extensions A and compatibility), kana and hangul: one token per character,
# which is close to what BPE tokenizers of Chinese-capable models produce on average.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\s{_CJK}\W]+|[^\s\w{_CJK}]", re.UNICODE)
_CJK_RE = re.compile(rf"[{_CJK}]")
_LETTER_RE = re.compile(r"[^\W\d_]", re.UNICODE)


def count_tokens(text: str) -> int:
    """CJK characters count one each; other words and punctuation marks one each."""
    return len(_TOKEN_RE.findall(text or ""))


def guess_lang(text: str) -> str:
    """'zh' when CJK characters make up at least 20% of the letters, else 'en'."""
    letters = _LETTER_RE.findall(text or "")
    if not letters:
        return "und"
    cjk = sum(1 for ch in letters if _CJK_RE.match(ch))
    return "zh" if cjk / len(letters) >= 0.2 else "en"


def content_hash(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
