"""Pull the chosen option(s) out of a model's free-text answer to a multiple-choice question.

PIPELINE.md section 5: robust extraction is essential, and when nothing usable is found the answer
is *invalid*, never a default letter (some public scorers fall back to "A", which inflates accuracy
on skewed keys such as PubMedQA's 55% "yes"). Rules are tried from the most to the least explicit:

1. an explicit answer statement ("答案是B", "故选D", "the answer is (C)", "Answer: A and C");
2. the whole reply is the letter(s) ("B", "(B)", "**B.**", "B. 棘孔");
3. the reply opens with a letter label ("C. maybe, because ...", "D：梳状肌是...");
4. a letter stated as correct ("B is correct", "B项正确", "选项C正确");
5. the text of exactly one option (or the one the reply opens with), for models that answer "yes";
and a refusal ("无法回答", "I cannot answer") with none of the above is reported as such.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Extraction:
    """letters: the chosen option keys, sorted and joined ("B", "AC"); None = invalid."""

    letters: str | None
    method: str  # explicit | bare | leading | stated_correct | option_text | refusal | none | empty

    @property
    def valid(self) -> bool:
        return self.letters is not None


_SEP = r"(?:\s*(?:[,，、/&]|和|与|及|以及|\band\b|\bor\b)?\s*)"

_REFUSAL = re.compile(
    r"无法(?:回答|确定|判断|作答|给出)|不能(?:回答|确定|给出)|抱歉|对不起|不确定|"
    r"(?i:\bI (?:can ?not|can't|am unable to|'m unable to|am not able to|'m not able to)\b|"
    r"\bI'm sorry\b|\bsorry\b|\bunable to (?:answer|determine)\b|\bnone of the (?:above|options)\b|"
    r"\bnot enough information\b|\bconsult (?:a|your) (?:doctor|physician)\b)"
)


def _normalise(text: str) -> str:
    # NFKC: full-width Ｂ / （ ） / ： become ASCII, so one set of patterns covers both.
    text = unicodedata.normalize("NFKC", text or "")
    # Markdown emphasis and LaTeX boxes are decoration around the letter: drop them.
    text = re.sub(r"\\boxed\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\\text(?:bf)?\{([^}]*)\}", r"\1", text)
    return text.replace("*", "").replace("`", "").replace("$", "").strip()


def _letters_group(keys: str) -> str:
    k = f"[{keys}]"
    # a run of letters ("AC") or letters joined by separators ("A、C", "A and C"), each not glued to a word
    return rf"(?<![A-Za-z])({k}(?:{_SEP}{k})*)(?![A-Za-z])"


def _compile(keys: str) -> dict[str, re.Pattern]:
    L = _letters_group(keys)
    open_ = r"[\s:：是为\(\[【\"'“‘]*"
    explicit = [
        # Chinese: 答案是B / 正确答案为：(C) / 答案应该是 A、C / 答：D / 最佳答案选B
        rf"(?:正确|最佳|最终|标准|参考)?答案(?:应该|应当|应|可能)?(?:是|为|选|选择)?(?:选项)?{open_}{L}",
        rf"(?<!问)答\s*[:：]{open_}{L}",
        # 故选D / 所以选择C / 应选B / 本题选 A / 选B / 我选择选项 C
        rf"(?:故|所以|因此|应|应该|本题|我|则)?选(?:择)?(?:选项)?{open_}{L}",
        # English: the answer is (C) / Answer: A / correct answer would be option B / answer is A and C
        rf"(?i:answer)(?:\s+(?i:is|would be|should be|will be|must be))?\s*(?i:option|choice)?{open_}{L}",
        rf"(?i:I (?:would |will |'d )?(?:choose|select|pick|go with))\s*(?i:option|choice)?{open_}{L}",
        rf"(?i:correct (?:option|choice) is){open_}{L}",
    ]
    stated = [
        rf"(?:选项)?{L}\s*(?:选项|项)?\s*(?:是)?(?:正确|对的|最佳|最合适|最恰当)",
        rf"(?i:option|choice)?\s*{L}\s+(?i:is (?:the )?(?:correct|right|best))",
    ]
    return {
        "explicit": re.compile("|".join(f"(?:{p})" for p in explicit)),
        "stated": re.compile("|".join(f"(?:{p})" for p in stated)),
        "bare": re.compile(rf"[\s\(\[【\"'“]*({f'[{keys}]'}(?:{_SEP}{f'[{keys}]'})*)[\s\)\]】\"'”.。:：,，、!！]*"),
        "leading": re.compile(rf"[\s\(\[【]*({f'[{keys}]'})[ \t]*(?:[\)\]】.。:：、,，]|\s+-|\n|$)"),
    }


_cache: dict[str, dict[str, re.Pattern]] = {}


def _patterns(keys: str) -> dict[str, re.Pattern]:
    if keys not in _cache:
        _cache[keys] = _compile(keys)
    return _cache[keys]


def _only_letters(group: str, keys: str) -> str:
    return "".join(sorted({c for c in group if c in keys}))


def _option_norm(opt: str) -> str:
    # the same normalisation as the reply (NFKC, no LaTeX/markdown decoration), minus final stops
    return _normalise(str(opt or "")).strip("。. ")


def _find_options(text: str, options: dict[str, str], fold: bool) -> dict[str, int]:
    hits: dict[str, int] = {}
    hay = text.lower() if fold else text
    for key, opt in options.items():
        opt_n = _option_norm(opt)
        if fold:
            opt_n = opt_n.lower()
        if not opt_n:
            continue
        if opt_n.isascii():
            # word boundaries: "no" must not match inside "not" or "know"
            m = re.search(rf"(?<![A-Za-z0-9]){re.escape(opt_n)}(?![A-Za-z0-9])", hay)
        else:
            m = hay.find(opt_n)
            m = None if m < 0 else m
        if m is not None:
            hits[key] = m if isinstance(m, int) else m.start()
    return hits


def _option_text_match(text: str, options: dict[str, str]) -> str | None:
    """The option whose text the reply gives instead of its letter, or None when none or several do."""
    # Case-folded ("Yes" = "yes"), except that a folded-only hit on the very span an exact hit holds is
    # a different option ("Gg" vs "GG" vs "gg" are different genotypes).
    exact = _find_options(text, options, fold=False)
    folded = _find_options(text, options, fold=True)
    hits = {k: p for k, p in folded.items() if k in exact or p not in exact.values()}
    if not hits:
        return None
    # An option text that is part of a longer hit ("肺" inside "肺胸膜") is not a separate claim.
    texts = {k: _option_norm(options[k]).lower() for k in hits}
    hits = {k: p for k, p in hits.items() if not any(k != j and texts[k] != texts[j] and texts[k] in texts[j] for j in hits)}
    if not hits:
        return None
    if len(hits) == 1:
        return next(iter(hits))
    # Several options named: only trust the one the reply opens with ("Yes. ... no evidence of ...").
    first = min(hits.values())
    if first <= 2 and list(hits.values()).count(first) == 1:
        return min(hits, key=hits.get)
    return None


def extract_choice(text: str | None, options: dict[str, str]) -> Extraction:
    """Chosen option key(s) from a free-text reply.

    A reply naming several letters is kept as given (for a single-answer item it is then simply
    wrong), never trimmed to its first letter.
    """
    keys = "".join(sorted(k for k in options if len(k) == 1 and k.isupper())) or "ABCD"
    t = _normalise(text or "")
    if not t:
        return Extraction(None, "empty")
    pats = _patterns(keys)

    m = pats["bare"].fullmatch(t)
    if m:
        return Extraction(_only_letters(m.group(1), keys), "bare")

    found = [g for mm in pats["explicit"].finditer(t) for g in mm.groups() if g]
    if found:
        # The last explicit statement wins: reasoning often mentions options before concluding.
        letters = _only_letters(found[-1], keys)
        if letters:
            return Extraction(letters, "explicit")

    m = pats["leading"].match(t)
    if m:
        return Extraction(m.group(1), "leading")

    # "B 棘孔" / "B 棘孔，因为..." (letter + that option's text, no punctuation) is a labelled answer.
    for key, opt in options.items():
        opt_n = _option_norm(opt)
        if opt_n and re.match(rf"[\(\[]?{re.escape(key)}[\)\]]?\s*{re.escape(opt_n)}", t):
            return Extraction(key, "leading")

    found = [g for mm in pats["stated"].finditer(t) for g in mm.groups() if g]
    if found:
        letters = _only_letters(found[-1], keys)
        if letters:
            return Extraction(letters, "stated_correct")

    refusal = bool(_REFUSAL.search(t))
    key = _option_text_match(t, options)
    if key is not None and not refusal:
        return Extraction(key, "option_text")
    return Extraction(None, "refusal" if refusal else "none")


def is_correct(extraction: Extraction, answer: str) -> bool:
    """Exact set match of chosen and keyed letters; an invalid extraction is never correct."""
    if extraction.letters is None:
        return False
    gold = "".join(sorted(set(unicodedata.normalize("NFKC", answer or "").upper().replace(",", "").replace(" ", ""))))
    return extraction.letters == gold
