"""Text helpers shared by the curation blocks: normalisation, CJK-aware tokens, n-grams.

One tokenisation for every block, so that "token" means the same thing in the length rule,
MinHash shingles and decontamination n-grams: each CJK character is one token (Chinese has no
spaces, and a character is the unit the zh literature counts in), each run of other letters or
digits is one token (a word). Mixed zh/en text therefore yields character n-grams on its Chinese
parts and word n-grams on its English parts.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable

# CJK Unified Ideographs (+ extension A, compatibility), kana and Hangul syllables: one token per char.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_CJK_RE = re.compile(f"[{_CJK}]")
_TOKEN_RE = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+")
_WS_RE = re.compile(r"\s+")
_SPACE_RE = re.compile(r"\s")


def normalize(text: str) -> str:
    """NFKC (full-width -> half-width, compatibility forms), lower case, collapsed whitespace."""
    return _WS_RE.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def tokens(text: str, *, normalized: bool = False) -> list[str]:
    """CJK-aware tokens: one per CJK character, one per other word; punctuation dropped."""
    return _TOKEN_RE.findall(text if normalized else normalize(text))


def count_tokens(text: str) -> int:
    """CJK-aware token count (same unit as `tokens`, without normalising: counting needs no case)."""
    return len(_TOKEN_RE.findall(text))


def cjk_ratio(text: str) -> float:
    """Share of CJK characters among non-space characters (0 for empty text)."""
    n = len(text) - len(_SPACE_RE.findall(text))
    return len(_CJK_RE.findall(text)) / n if n else 0.0


def is_cjk_text(text: str, lang: str = "") -> bool:
    """Decide zh-style (character) vs en-style (word) processing from the text itself.

    The text decides, not only the record's lang tag, so that the same text always yields the
    same shingles whatever dataset it was imported from.
    """
    if lang.startswith(("zh", "ja", "ko")) and not text:
        return True
    # one regex pass: spaces are counted in the denominator here (cjk_ratio excludes them), which
    # moves the 0.3 cut-off by a few points for English and not at all for Chinese
    return len(_CJK_RE.findall(text)) >= 0.3 * len(text) if text else False


def ngrams(toks: list[str], n: int) -> list[str]:
    """Space-joined n-grams; a sequence shorter than n yields itself as one gram (if not empty)."""
    if len(toks) < n:
        return [" ".join(toks)] if toks else []
    return [" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def iter_lines(text: str) -> Iterable[str]:
    return (line.strip() for line in text.splitlines() if line.strip())
