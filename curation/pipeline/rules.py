"""Rule-based quality filters for zh + en text (docs/METHODS.md 1.2).

The rules come in blocks, one per family (length, PII, toxic, symbols, non-text, word shape,
layout, repetition): each block reads a precomputed `TextStats`, records its measures and returns
the rules it failed; called alone it gives a datatrove-style verdict (True or (False, reason)).
`RuleFilter` runs the configured blocks in priority order. Every threshold is a field of `RuleConfig` (a curator-facing setting) with its source:

- Gopher = Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training
  Gopher", appendix A (MassiveWeb quality filter and repetition removal, table A1).
- C4 = Raffel et al. 2020 (T5), section 2.2 "Colossal Clean Crawled Corpus".
- FineWeb = Penedo et al. 2024, "The FineWeb Datasets", section 3 (custom filters).
- "ours" = no published number fits (e.g. short SFT records, CJK adaptations); the reason is given.

Counting unit: the CJK-aware token of textutil (a CJK character or a word), so the Gopher word
rules apply to Chinese as character rules. Word-shape rules (mean word length, stop words) only
make sense for space-separated languages and are skipped for CJK text.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from curation.pipeline import pii as pii_mod
from curation.pipeline.base import RecordView, ScoreResult
from curation.pipeline.textutil import _CJK, _TOKEN_RE, cjk_ratio
from medstudio.datasets.convert import text_fields

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# Kinds that hold whole documents; line-layout rules (bullets, short lines, terminal punctuation)
# and the stop-word rule only make sense there (a QA answer or a dialogue turn is not a web page).
DOCUMENT_KINDS = {"document"}


@dataclass
class RuleConfig:
    """Thresholds of the rule filters; every field is a setting a curator may change per run."""

    # --- length (Gopher: keep 50..100,000 words) ---
    min_tokens: int = 50
    max_tokens: int = 100_000
    # ours: SFT records (qa, dialogue, mcq, pair) are legitimately short ("What is the dose?"), so
    # Gopher's 50-word floor would drop most of them; 8 tokens drops empty / one-phrase records.
    min_tokens_sft: int = 8
    # --- word shape, non-CJK text only (Gopher: mean word length 3..10 characters) ---
    min_mean_word_len: float = 3.0
    max_mean_word_len: float = 10.0
    # Gopher: at least 2 of these stop words (documents only).
    min_stop_words: int = 2
    # --- symbols / special characters ---
    # Gopher: symbol-to-word ratio > 0.1 for "#" and ellipsis.
    max_symbol_word_ratio: float = 0.1
    # ours: share of non-space characters that are neither letters, digits, CJK nor common
    # punctuation. Gopher has only the #/ellipsis ratio; BigScience ROOTS (Laurençon et al. 2022)
    # used a tuned per-language special-character ratio; 0.3 keeps formulae and lab values.
    max_special_char_ratio: float = 0.3
    # Gopher: 80% of words must contain an alphabetic character (CJK characters count as letters).
    min_alpha_token_ratio: float = 0.8
    # --- line layout, documents only ---
    max_bullet_lines_ratio: float = 0.9  # Gopher
    max_ellipsis_lines_ratio: float = 0.3  # Gopher
    # FineWeb: drop when fewer than 12% of lines end in terminal punctuation.
    min_line_punct_ratio: float = 0.12
    # FineWeb: drop when more than 67% of lines are short (<= 30 characters).
    max_short_line_ratio: float = 0.67
    short_line_chars: int = 30
    # --- repetition (Gopher table A1) ---
    max_dup_line_ratio: float = 0.3
    max_dup_para_ratio: float = 0.3
    max_dup_line_char_ratio: float = 0.2
    max_dup_para_char_ratio: float = 0.2
    # Gopher: character share of the most frequent 2/3/4-gram.
    max_top_ngram_char_ratio: dict[int, float] = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    # Gopher: character share of all duplicated 5..10-grams.
    max_dup_ngram_char_ratio: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    # ours: Gopher's n-gram rules count words; on CJK text our tokens are characters, and a
    # Chinese word averages about 1.5 characters, so an n-word rule becomes a ceil(1.5 n)-char rule.
    cjk_chars_per_word: float = 1.5
    # --- mostly non-text (URLs, markup, boilerplate) ---
    # ours: share of characters inside URLs / inside HTML or markdown markup. C4 and FineWeb have
    # no single number for this; a page that is 20% links or 10% tags is navigation, not prose.
    max_url_char_ratio: float = 0.2
    max_markup_char_ratio: float = 0.1
    # C4: pages containing "lorem ipsum" are dropped; lines mentioning javascript / cookie or
    # privacy policies are boilerplate. ours: drop a document when over 30% of lines are such.
    max_boilerplate_lines_ratio: float = 0.3
    # --- toxic content (C4 drops any page holding a block-listed word: max 0) ---
    max_toxic_hits: int = 0
    toxic_words_en: str = str(DATA_DIR / "toxic_en.txt")
    toxic_words_zh: str = str(DATA_DIR / "toxic_zh.txt")
    # --- private information (docs/METHODS.md 1.2: drop documents with private information) ---
    max_pii_hits: int = 0
    pii_types: tuple[str, ...] = pii_mod.PII_TYPES
    # Rule names to skip entirely (e.g. ["pii"] when PII is redacted instead of dropped).
    disabled: tuple[str, ...] = ()

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "RuleConfig":
        """Build from a JSON params dict; unknown keys are an error (a typo must not pass silently)."""
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown rule settings {sorted(unknown)}; known: {', '.join(sorted(known))}")
        cfg = cls()
        for key, value in params.items():
            current = getattr(cfg, key)
            if isinstance(current, dict):
                value = {int(k): float(v) for k, v in dict(value).items()}
            elif isinstance(current, tuple):
                value = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
            elif isinstance(current, bool):
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            elif isinstance(current, int):
                value = int(value)
            elif isinstance(current, float):
                value = float(value)
            setattr(cfg, key, value)
        return cfg

    def as_params(self) -> dict[str, Any]:
        d = asdict(self)
        d["pii_types"] = list(self.pii_types)
        d["disabled"] = list(self.disabled)
        return d


_WS_RE = re.compile(r"\s")
_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})  # Gopher's list
_BULLETS = ("•", "●", "○", "■", "□", "▪", "-", "*", "·", "–", "—", "➢", "►")
_ELLIPSIS = ("...", "…")
# Terminal punctuation, en + zh (FineWeb lists the Latin ones; the CJK ones are ours).
_TERMINAL = tuple('.!?"\'。！？；…」』”’)）:：') + ("...",)
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MARKUP_RE = re.compile(r"<[^<>\n]{1,200}>|\[[^\]\n]*\]\([^)\n]*\)|&[a-z]{2,8};|\{\{[^}]*\}\}")
_BOILERPLATE_RE = re.compile(
    r"lorem ipsum|javascript|cookie policy|uses cookies|privacy policy|terms of use|terms of service"
    r"|all rights reserved|版权所有|隐私政策|使用条款|免责声明|点击这里|扫码关注|关注公众号",
    re.IGNORECASE,
)
# Letters, digits, CJK, whitespace and the punctuation ordinary prose (and lab values) uses.
_SPECIAL_CHAR_RE = re.compile(
    f"[^\\w\\s{_CJK}" + re.escape(".,;:!?'\"()[]%/-+=<>°·，。；：！？、“”‘’（）《》【】—…~") + "]"
)


@dataclass
class TextStats:
    """What the rule blocks read, computed once per text (and shared by all blocks)."""

    text: str
    kind: str
    is_doc: bool
    n_tokens: int
    is_cjk: bool
    tokens: list[str]
    lines: list[str]
    paragraphs: list[str]
    n_chars: int
    # for non-document kinds, the separate texts (question, answer, turns, options); None = whole text
    fields: list[str] | None = None

    @classmethod
    def of(cls, text: str, kind: str = "document", fields: list[str] | None = None) -> "TextStats":
        toks = _TOKEN_RE.findall(text)
        return cls(
            text=text,
            kind=kind,
            is_doc=kind in DOCUMENT_KINDS,
            n_tokens=len(toks),
            is_cjk=cjk_ratio(text) >= 0.3,
            tokens=toks,
            lines=_lines(text),
            paragraphs=_paragraphs(text),
            n_chars=len(text),
            fields=fields,
        )


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _dup_fraction(items: list[str]) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of characters in those repeats)."""
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    dup_n = dup_chars = 0
    total_chars = sum(len(i) for i in items) or 1
    for item in items:
        if item in seen:
            dup_n += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_n / len(items), dup_chars / total_chars


class _NgramView:
    """Token n-gram statistics in numpy: one id per token, n-grams as rolling 64-bit hashes.

    Own code rather than a library call: datatrove implements these Gopher measures with Python
    dicts of n-gram tuples, which was 70% of the rules' run time here; the vectorised form gives
    the same numbers several times faster.
    """

    _MUL = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, toks: list[str]):
        # A token's id is its str hash (map(hash) runs in C; a vocabulary dict built in a Python
        # generator was a sixth of the rules' time). Only equality of ids matters below, and the
        # n-grams are 64-bit hashes already, so a hash collision is as (un)likely as theirs.
        self.ids = np.fromiter(map(hash, toks), dtype=np.int64, count=len(toks)).view(np.uint64)
        self.lens = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
        self.cum = np.concatenate(([0], np.cumsum(self.lens)))
        self.total = int(self.cum[-1])
        # No n-gram repeats from this n on: an (n+1)-gram seen twice starts with an n-gram seen
        # twice, so once no n-gram repeats, no longer one does, and the rules' remaining n (up to
        # 10) need no np.unique at all (most clean documents stop at n = 5 to 7).
        self._no_repeat_from = 1 << 30

    def _grams(self, n: int) -> np.ndarray:
        # built incrementally from the (n-1)-grams: the rules ask for n = 2..10 on the same text
        cache = self.__dict__.setdefault("_cache", {1: self.ids + np.uint64(1)})
        k = max(j for j in cache if j <= n)
        out = cache[k]
        with np.errstate(over="ignore"):
            while k < n:
                k += 1
                out = out[:-1] * self._MUL + self.ids[k - 1 :] + np.uint64(1)
                cache[k] = out
        return out

    def top_ratio(self, n: int) -> float:
        """Character share of the most frequent n-gram (Gopher), 0 when no n-gram repeats."""
        if self.ids.size < n or not self.total or n >= self._no_repeat_from:
            return 0.0
        _, first, counts = np.unique(self._grams(n), return_index=True, return_counts=True)
        top = int(counts.max())
        if top < 2:
            self._no_repeat_from = n
            return 0.0
        # ties between equally frequent n-grams: the one covering most characters
        starts = first[counts == top]
        chars = int((self.cum[starts + n] - self.cum[starts]).max())
        return float(top * chars / self.total)

    def dup_ratio(self, n: int) -> float:
        """Character share of tokens covered by repeated occurrences of an n-gram (Gopher;
        the first occurrence is not counted, as in datatrove)."""
        if self.ids.size < n or not self.total or n >= self._no_repeat_from:
            return 0.0
        grams = self._grams(n)
        _, first = np.unique(grams, return_index=True)
        repeat = np.ones(grams.size, dtype=bool)
        repeat[first] = False
        starts = np.flatnonzero(repeat)
        if starts.size == 0:
            self._no_repeat_from = n
            return 0.0
        # +1 where a repeat starts, -1 where it ends (bincount: np.add.at's unbuffered loop was
        # slower than everything else in this method on a few hundred tokens)
        size = self.ids.size + 1
        diff = np.bincount(starts, minlength=size) - np.bincount(starts + n, minlength=size)
        covered = np.cumsum(diff[:-1]) > 0
        return float(self.lens[covered].sum() / self.total)


@lru_cache(maxsize=16)
def load_word_list(path: str) -> frozenset[str]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"toxic word list not found: {path} (setting toxic_words_en / toxic_words_zh)")
    words = set()
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip().lower()
        if line:
            words.add(line)
    return frozenset(words)


@lru_cache(maxsize=16)
def _toxic_matchers(en_path: str, zh_path: str) -> tuple[re.Pattern | None, re.Pattern | None]:
    en = sorted(load_word_list(en_path), key=len, reverse=True)
    zh = sorted(load_word_list(zh_path), key=len, reverse=True)
    en_re = re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, en)) + r")(?![a-z0-9])") if en else None
    zh_re = re.compile("|".join(map(re.escape, zh))) if zh else None
    return en_re, zh_re


# --------------------------------------------------------------------------- rule blocks
#
# One block per rule family. A block owns the rule names it can fail (in priority order), records
# its measures and returns the failed names; called alone it gives a datatrove-style verdict.
# RuleFilter runs the blocks in order, so the order of BLOCKS and of each block's `rules` is the
# priority of the reason stored on the Score (the first failing rule).

class RuleBlock:
    """Base of the rule blocks: `name` (the family), `rules` (what it may fail, priority order)."""

    name: str = ""
    rules: tuple[str, ...] = ()

    def __init__(self, cfg: RuleConfig | None = None):
        self.cfg = cfg or RuleConfig()

    def evaluate(self, st: TextStats, m: dict[str, Any]) -> list[str]:
        """Failed rule names of this family (may repeat; RuleFilter orders them); measures go into `m`."""
        raise NotImplementedError

    def __call__(self, text: str, kind: str = "document", fields: list[str] | None = None) -> bool | tuple[bool, str]:
        """This block alone, datatrove style: True, or (False, its first failing rule)."""
        off = set(self.cfg.disabled)
        failed = [r for r in self.evaluate(TextStats.of(text, kind, fields), {}) if r not in off]
        return True if not failed else (False, min(failed, key=self.rules.index))


class LengthBlock(RuleBlock):
    """Gopher length bounds; SFT kinds use their own (lower) floor."""

    name = "length"
    rules = ("too_few_tokens", "too_many_tokens")

    def evaluate(self, st, m):
        cfg = self.cfg
        failed = []
        if st.n_tokens < (cfg.min_tokens if st.is_doc else cfg.min_tokens_sft):
            failed.append("too_few_tokens")
        if st.n_tokens > cfg.max_tokens:
            failed.append("too_many_tokens")
        return failed


class PiiBlock(RuleBlock):
    """Private information (names, phones, IDs, addresses, e-mails): more than max_pii_hits spans."""

    name = "pii"
    rules = ("pii",)

    def evaluate(self, st, m):
        spans = pii_mod.detect(st.text, self.cfg.pii_types)
        m["pii"] = pii_mod.counts(spans)
        return ["pii"] if len(spans) > self.cfg.max_pii_hits else []


class ToxicBlock(RuleBlock):
    """C4-style block lists (en words on word boundaries, zh substrings): more than max_toxic_hits."""

    name = "toxic"
    rules = ("toxic",)

    def __init__(self, cfg: RuleConfig | None = None):
        super().__init__(cfg)
        # fail early on a missing list rather than on the first record
        self.en_re, self.zh_re = _toxic_matchers(self.cfg.toxic_words_en, self.cfg.toxic_words_zh)

    def hits(self, text: str) -> list[str]:
        hits: list[str] = []
        if self.en_re is not None:
            hits += self.en_re.findall(text.lower())
        if self.zh_re is not None:
            hits += self.zh_re.findall(text)
        return hits

    def evaluate(self, st, m):
        hits = self.hits(st.text)
        m["toxic"] = sorted(set(hits))[:10]
        return ["toxic"] if len(hits) > self.cfg.max_toxic_hits else []


class SymbolBlock(RuleBlock):
    """Special-character ratio (ours), Gopher's #/ellipsis-to-word ratio and alphabetic-token share."""

    name = "symbols"
    rules = ("special_chars", "symbol_word_ratio", "non_alpha_tokens")

    def evaluate(self, st, m):
        cfg, text = self.cfg, st.text
        failed = []
        non_space = (len(text) - len(_WS_RE.findall(text))) or 1
        special = len(_SPECIAL_CHAR_RE.findall(text))
        m["special_char_ratio"] = round(special / non_space, 4)
        if special / non_space > cfg.max_special_char_ratio:
            failed.append("special_chars")
        n_words = max(st.n_tokens, 1)
        symbols = text.count("#") + text.count("...") + text.count("…")
        m["symbol_word_ratio"] = round(symbols / n_words, 4)
        if symbols / n_words > cfg.max_symbol_word_ratio:
            failed.append("symbol_word_ratio")
        if st.tokens:
            # a token is letters/digits/underscore (textutil); one without a letter is all digits
            alpha = len(st.tokens) - sum(map(str.isdigit, st.tokens))
            m["alpha_token_ratio"] = round(alpha / len(st.tokens), 4)
            if alpha / len(st.tokens) < cfg.min_alpha_token_ratio:
                failed.append("non_alpha_tokens")
        return failed


class NonTextBlock(RuleBlock):
    """Mostly not prose: URL share, markup share, boilerplate lines (C4 lorem ipsum / policies)."""

    name = "non_text"
    rules = ("url_heavy", "markup_heavy", "boilerplate")

    def evaluate(self, st, m):
        cfg, text = self.cfg, st.text
        failed = []
        n_chars = max(st.n_chars, 1)
        url_chars = sum(len(u) for u in _URL_RE.findall(text))
        markup_chars = sum(len(u) for u in _MARKUP_RE.findall(text))
        m["url_char_ratio"] = round(url_chars / n_chars, 4)
        m["markup_char_ratio"] = round(markup_chars / n_chars, 4)
        if url_chars / n_chars > cfg.max_url_char_ratio:
            failed.append("url_heavy")
        if markup_chars / n_chars > cfg.max_markup_char_ratio:
            failed.append("markup_heavy")
        if st.lines:
            if "lorem ipsum" in text.lower():
                failed.append("boilerplate")
            else:
                bp = sum(1 for ln in st.lines if _BOILERPLATE_RE.search(ln)) / len(st.lines)
                m["boilerplate_lines_ratio"] = round(bp, 4)
                if bp > cfg.max_boilerplate_lines_ratio:
                    failed.append("boilerplate")
        return failed


class WordShapeBlock(RuleBlock):
    """Gopher mean word length and stop words; space-separated (non-CJK) text only."""

    name = "word_shape"
    rules = ("mean_word_length", "stop_words")

    def evaluate(self, st, m):
        cfg = self.cfg
        failed = []
        if st.is_cjk or not st.tokens:
            return failed
        words = [t for t in st.tokens if not t.isdigit()] or st.tokens
        mean_len = sum(len(w) for w in words) / len(words)
        m["mean_word_len"] = round(mean_len, 3)
        if not cfg.min_mean_word_len <= mean_len <= cfg.max_mean_word_len:
            failed.append("mean_word_length")
        if st.is_doc:
            stop = sum(1 for t in st.tokens if t.lower() in _STOP_WORDS)
            m["stop_words"] = stop
            if stop < cfg.min_stop_words:
                failed.append("stop_words")
        return failed


class LayoutBlock(RuleBlock):
    """Line layout of documents: bullets, ellipsis endings (Gopher), terminal punctuation and short
    lines (FineWeb)."""

    name = "layout"
    rules = ("bullet_lines", "ellipsis_lines", "line_punctuation", "short_lines")

    def evaluate(self, st, m):
        cfg = self.cfg
        failed = []
        if not (st.is_doc and st.lines):
            return failed
        n_lines = len(st.lines)
        bullets = sum(1 for ln in st.lines if ln.startswith(_BULLETS)) / n_lines
        ellipsis = sum(1 for ln in st.lines if ln.endswith(_ELLIPSIS)) / n_lines
        punct = sum(1 for ln in st.lines if ln.endswith(_TERMINAL)) / n_lines
        short = sum(1 for ln in st.lines if len(ln) <= cfg.short_line_chars) / n_lines
        m.update(
            bullet_lines_ratio=round(bullets, 4),
            ellipsis_lines_ratio=round(ellipsis, 4),
            line_punct_ratio=round(punct, 4),
            short_line_ratio=round(short, 4),
        )
        if bullets > cfg.max_bullet_lines_ratio:
            failed.append("bullet_lines")
        if ellipsis > cfg.max_ellipsis_lines_ratio:
            failed.append("ellipsis_lines")
        if punct < cfg.min_line_punct_ratio:
            failed.append("line_punctuation")
        # one- or two-line documents have no "layout" to judge
        if n_lines >= 3 and short > cfg.max_short_line_ratio:
            failed.append("short_lines")
        return failed


class RepetitionBlock(RuleBlock):
    """Gopher repetition (table A1): duplicate lines / paragraphs, top 2-4-gram and duplicated
    5-10-gram character shares (n-grams scaled to characters on CJK text).

    For non-document kinds with `fields`, repetition is judged inside each field, because an answer
    restating its question or MCQ options sharing a stem is normal, while one answer repeating
    itself is not; the measures keep the worst field.
    """

    name = "repetition"
    rules = ("dup_lines", "dup_paragraphs", "top_ngram_repetition", "dup_ngram_repetition")

    def evaluate(self, st, m):
        cfg = self.cfg
        failed = []
        worst: dict[str, float] = {}
        units = [None] if st.is_doc or not st.fields else st.fields
        for unit in units:
            # None = the whole text, whose lines / paragraphs / tokens are already in `st`
            u_lines = st.lines if unit is None else _lines(unit)
            u_paras = st.paragraphs if unit is None else _paragraphs(unit)
            u_toks = st.tokens if unit is None else _TOKEN_RE.findall(unit)
            dl, dlc = _dup_fraction(u_lines)
            dp, dpc = _dup_fraction(u_paras)
            worst["dup_line_ratio"] = max(worst.get("dup_line_ratio", 0.0), dl)
            worst["dup_line_char_ratio"] = max(worst.get("dup_line_char_ratio", 0.0), dlc)
            if dl > cfg.max_dup_line_ratio or dlc > cfg.max_dup_line_char_ratio:
                failed.append("dup_lines")
            if dp > cfg.max_dup_para_ratio or dpc > cfg.max_dup_para_char_ratio:
                failed.append("dup_paragraphs")
            # Gopher judges repetition on documents that passed its 50-word floor; on shorter texts
            # a single repeated phrase (an MCQ stem, a drug name) already exceeds the ratios.
            if len(u_toks) < cfg.min_tokens:
                continue
            view = _NgramView(u_toks)
            scale = cfg.cjk_chars_per_word if st.is_cjk else 1.0
            for n, limit in sorted(cfg.max_top_ngram_char_ratio.items()):
                n_eff = math.ceil(n * scale)
                r = view.top_ratio(n_eff)
                if r > limit:
                    m["top_ngram"] = {"n": n_eff, "ratio": round(r, 4)}
                    failed.append("top_ngram_repetition")
                    break
            for n, limit in sorted(cfg.max_dup_ngram_char_ratio.items()):
                n_eff = math.ceil(n * scale)
                r = view.dup_ratio(n_eff)
                if r > limit:
                    m["dup_ngram"] = {"n": n_eff, "ratio": round(r, 4)}
                    failed.append("dup_ngram_repetition")
                    break
        m.update({k: round(v, 4) for k, v in worst.items()})
        return failed


# The default blocks, in priority order.
BLOCKS: tuple[type[RuleBlock], ...] = (
    LengthBlock,
    PiiBlock,
    ToxicBlock,
    SymbolBlock,
    NonTextBlock,
    WordShapeBlock,
    LayoutBlock,
    RepetitionBlock,
)


class RuleFilter:
    """The configured rule blocks over one text. `check` returns the failed rule names plus measures."""

    # Order = priority of the reason stored on the Score (the first failing rule).
    RULE_ORDER = tuple(rule for block in BLOCKS for rule in block.rules)

    def __init__(self, cfg: RuleConfig | None = None, blocks: tuple[type[RuleBlock], ...] = BLOCKS):
        self.cfg = cfg or RuleConfig()
        known = {rule for block in blocks for rule in block.rules}
        unknown = set(self.cfg.disabled) - known
        if unknown:
            raise ValueError(f"unknown rules in 'disabled': {sorted(unknown)}")
        # every block is built (so a bad setting fails here, e.g. a missing toxic list, even when
        # disabled); one whose rules are all disabled is not run
        off = set(self.cfg.disabled)
        self.blocks = [b for b in (cls(self.cfg) for cls in blocks) if set(b.rules) - off]
        self._order = {rule: i for i, rule in enumerate(r for b in blocks for r in b.rules)}

    def check(self, text: str, kind: str = "document", fields: list[str] | None = None) -> tuple[list[str], dict[str, Any]]:
        """Failed rule names (priority order) and the measures behind them.

        `fields`: for non-document kinds, the separate texts (question, answer, turns, options),
        inside which repetition is judged (see RepetitionBlock).
        """
        st = TextStats.of(text, kind, fields)
        m: dict[str, Any] = {"n_tokens": st.n_tokens, "cjk": st.is_cjk}
        off = set(self.cfg.disabled)
        failed: set[str] = set()
        for block in self.blocks:
            failed.update(r for r in block.evaluate(st, m) if r not in off)
        return sorted(failed, key=self._order.__getitem__), m

    def __call__(self, text: str, kind: str = "document") -> bool | tuple[bool, str]:
        """datatrove-style verdict: True, or (False, first failing rule)."""
        failed, _ = self.check(text, kind)
        return True if not failed else (False, failed[0])


class RulesScorer:
    """Per-record scorer: value = number of failed rules; reason = the first (highest-priority) one."""

    name = "rules"
    version = "1"

    def __init__(self, cfg: RuleConfig | None = None):
        self.filter = RuleFilter(cfg)

    def score_batch(self, records: list[RecordView]) -> list[ScoreResult]:
        out = []
        for rec in records:
            fields = text_fields(rec.kind, rec.content) if rec.content else None
            failed, measures = self.filter.check(rec.text, rec.kind, fields)
            out.append(
                ScoreResult(
                    value=float(len(failed)),
                    keep=not failed,
                    reason=failed[0] if failed else "",
                    detail={"failed": failed, "measures": measures},
                )
            )
        return out
