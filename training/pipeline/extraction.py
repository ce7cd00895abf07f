"""Pull the chosen option(s) out of a model's free-text answer to a multiple-choice question.

docs/METHODS.md section 5: robust extraction is essential, and when nothing usable is found the answer
is *invalid*, never a default letter (some public scorers fall back to "A", which inflates accuracy
on skewed keys such as PubMedQA's 55% "yes"). A wrong letter is worse than invalid, so whenever two
readings of a reply disagree the reply is invalid.

Order (docs/EVALUATION.md, "Answer extraction"):

0. reasoning is dropped first: ``<think>…</think>`` (or everything before a lone ``</think>``, or
   everything after an unclosed ``<think>``); letters in it never count;
1. an answer field: ``<answer>C</answer>``, ``{"answer": "C"}``, ``\\boxed{C}`` (the last one wins);
2. the whole reply is the letter(s): "B", "(b)", "**B.**", "A, C";
3. an explicit answer statement: "答案是B", "故选D", "the answer is (c)", "I'd go with B",
   "Answer: A and C", "答案是肺胸膜" (the last one wins, but two different ones without a correction
   such as "但/actually/wait" between them are a conflict);
4. weaker statements and a leading label: "B is correct", "B项最符合题意", "the most likely diagnosis
   is C", "option (B) is the best answer", "not A, it's C", "leaving C", "C. maybe, because ...";
5. a letter next to its own option text anywhere ("……C“膈胸膜”……");
6. the text of exactly one option (or the one the reply opens with), for models that answer "yes";
and a refusal or hedge ("I cannot answer", "either A or B") with none of the above is invalid.

Checks on top: a negated letter ("not A", "A是错误的", "排除A") is no claim; "A or B" is a hedge; a
letter followed by another option's text ("答案是B. 膈胸膜" where 膈胸膜 is C) is a conflict; the
article "a" / pronoun "I" are not options ("A patient ...", "I think ..."); a "letter" that is the
start of an option's text ("D-二聚体含量") names that option. With ``multi=False`` (a single-answer
item) several letters are invalid; with the default (unknown) they are kept as given.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Extraction:
    """letters: the chosen option keys, sorted and joined ("B", "AC"); None = invalid."""

    letters: str | None
    # tagged | bare | explicit | stated_correct | leading | labelled | option_text
    # invalid: refusal | hedge | conflict | ambiguous | think_only | none | empty (| failed, set by callers)
    method: str

    @property
    def valid(self) -> bool:
        return self.letters is not None


# ------------------------------------------------------------------------------------------------
# Normalisation

_THINK_OPEN = re.compile(r"<\s*(?:think|thinking|reasoning|thought)\s*>|◁think▷", re.I)
_THINK_CLOSE = re.compile(r"<\s*/\s*(?:think|thinking|reasoning|thought)\s*>|◁/think▷", re.I)


def _normalise(text: str) -> str:
    # NFKC: full-width Ｂ / （ ） / ： become ASCII, so one set of patterns covers both.
    text = unicodedata.normalize("NFKC", text or "")
    text = re.sub(r"\\(?:text(?:bf|rm|it|tt)?|math(?:rm|bf|it|sf|tt)|operatorname|bf|rm)\s*\{([^{}]*)\}", r"\1", text)
    # markdown / LaTeX decoration around letters
    text = re.sub(r"\\[\(\)\[\]]", " ", text)
    text = text.replace("**", "").replace("__", "").replace("`", "").replace("$", "")
    text = re.sub(r"(?<![A-Za-z0-9])\*(?=\S)|(?<=\S)\*(?![A-Za-z0-9])", "", text)
    text = re.sub(r"(?m)^\s{0,3}#{1,6}\s*", "", text)
    return text.strip()


def _strip_reasoning(text: str) -> tuple[str, bool]:
    """The reply without its reasoning block(s); True when there was one."""
    had = False
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        had = True
        last = closes[-1]
        text = text[last.end():]  # everything up to the last </think> is reasoning
    m = _THINK_OPEN.search(text)
    if m:
        had = True
        text = text[: m.start()]  # an unclosed <think>: the rest is reasoning (often truncated)
    return text.strip(), had


# ------------------------------------------------------------------------------------------------
# Patterns (compiled per set of option keys)

_CONNECT = {"is", "was", "and", "or", "because", "since", "as", "would", "seems", "fits", "appears", "looks",
            "remains", "here", "which", "being", "for", "with", "only", "best", "also"}
_NEG_BEFORE = re.compile(
    r"(?:不是|并非|而非|不选|别选|排除|除了|除|非|不|"
    r"(?i:\bnot|n't|\brather than|\binstead of|\bexcept|\bexcluding|\bother than|\brule out|\bruled out|\beliminate|\beliminating))"
    r"\s*(?:(?i:option|choice|answer)\s*|选项\s*)?[\(\[【\"“]?\s*$")
_NEG_AFTER = re.compile(
    r"[\)\]】\"”]?\s*(?:项|选项)?\s*(?:的说法|说法|选项)?\s*(?:是|为|也|则)?\s*(?:错误|错的|不对|不正确|不符合|不是|不选|可排除|排除|被排除|不成立|是干扰项|为干扰项|干扰项)|"
    r"[\)\]\"]?\s*(?i:(?:is|are|was|seems|would be|is also|are also)\s+(?:wrong|incorrect|not\b|false|a distractor|unlikely|ruled out|excluded|eliminated|less likely)|"
    r"\s*can be (?:ruled out|excluded|eliminated)|\s*isn't|\s*is out|\?\s*no\b)")
_CORRECTION = re.compile(
    r"不过|但|然而|其实|实际上|更正|重新|再想|再看|仔细|不对|纠正|修正|改为|改选|最终|"
    r"(?i:\bbut\b|\bhowever\b|\bactually\b|\bwait\b|on second thought|reconsider|\binstead\b|\brather\b|correction|"
    r"\bmistake\b|\bno\b[,:.]|\bfinal\b|after (?:review|re-?check|further))")
_HEDGE_AFTER = re.compile(
    r"(?i:(?:could|might|may)\s+also\s+be\s+(?:option\s+)?[\(\[]?(?P<a>[A-Z])\b|"
    r"\b(?P<b>[A-Z])\s+(?:is|could be|might be|may be)\s+also\s+(?:possible|plausible|correct|right|reasonable|acceptable)|"
    r"\b(?P<c>[A-Z])\s+(?:is\s+)?(?:also\s+)?(?:plausible|possible)\b)|"
    r"(?P<d>[A-Z])\s*(?:项|选项)?也(?:有)?可能|也可能是\s*(?P<e>[A-Z])|也可以选\s*(?P<f>[A-Z])|(?P<g>[A-Z])\s*(?:项)?也(?:是)?(?:对的|正确|可以)")
_HEDGE_SEP = re.compile(r"(?i:\bor\b)|或者|或|还是|/")
_REFUSAL = re.compile(
    r"无法(?:回答|确定|判断|作答|给出|提供)|不能(?:回答|确定|给出|提供)|抱歉|对不起|不确定|超出了?我的|犹豫|说不准|"
    r"(?i:\bI (?:can ?not|can't|am unable to|'m unable to|am not able to|'m not able to|don't know|do not know|need more)\b|"
    r"\bI'm sorry\b|\bsorry\b|\bunable to (?:answer|determine)\b|\bnone of the (?:above|options)\b|"
    r"\bnot enough information\b|\bconsult (?:a|your) (?:doctor|physician)\b|\bcan't decide\b|\binconclusive\b|\bunclear\b)"
)
_GLUED = r"(?:超|型|族|细胞|淋巴|组|级|类|端|链|受体|肽|环|蛋白|因子|抗原|抗体|亚型|病毒|肝|波|溶血)"
# a leading label whose clause rejects it ("A. 肋胸膜属于壁胸膜，不符合题意") is an option being analysed
_LEAD_REJECT = re.compile(r"^[^\n。.!?！？]{0,60}?(?:不符合|错误|不正确|不对|排除|干扰项|"
                          r"(?i:\bis (?:wrong|incorrect|not (?:correct|right|the answer))|\bruled out|\bunlikely|\bdistractor))")
_OPEN = r"[\s:：是为\(\[【\"'“‘「『=→⇒>\-–—]*"
_TIGHT = r"[\s:：\-—–)）\]】.、]*[\"“「『《（(]?"


@dataclass
class _Pats:
    keys: str
    group: re.Pattern          # a letter group at a position
    bare: re.Pattern
    explicit: list[re.Pattern]  # prefixes, the answer follows at m.end()
    stated: list[re.Pattern]    # contain the group as (?P<g>...)
    weak_prefix: list[re.Pattern]
    leading: re.Pattern
    line_label: re.Pattern


def _compile(keys: str) -> _Pats:
    up, lo = keys, keys.lower()
    item = rf"(?:[{up}]+|[{lo}](?![a-z]))"
    sep = r"(?:\s*(?:[,，、/&+]|和|与|及|以及|或者|或|还是|\band\b|\bor\b)\s*|[ \t]+)"
    # not glued to a word: "C-reactive", "B-cell", "B超", "A型血", "T细胞" are no options
    grp = rf"(?<![A-Za-z0-9])(?:{item}(?:{sep}{item})*)(?![A-Za-z0-9]|[-‐][A-Za-z0-9\u4e00-\u9fff]|{_GLUED})"
    G = rf"(?P<g>{grp})"
    deco_l, deco_r = r"[\(\[【（]?", r"[\)\]】）]?"
    explicit = [
        # 答案是B / 正确答案为：(C) / 答案应该是 A、C / 答：D / 【答案】C / 答案C
        rf"(?:正确|最佳|最终|标准|参考|本题(?:的)?|这道题的|我的|最后的?)?答案\s*[】\]]?\s*(?:应该|应当|应|可能|大概|就|也)?(?:是|为|选|选择)?\s*(?:[:：])?\s*(?:选项)?{_OPEN}",
        rf"(?<![问解])答\s*[:：]{_OPEN}",
        # 故选D / 所以选择C / 应选B / 本题选 A / 选B / 我选择选项 C / 答案选C
        rf"(?<![不没别未非勿误错])(?:故|所以|因此|应|应该|应当|本题|我|则|就|可以|综上[,，]?)?(?<![不没别未非勿误错])(?<!不应)(?<!不该)(?<!不能)(?<!不要)(?<!不会)(?<!不可)"
        rf"选(?:择|用)?(?:选项|答案)?{_OPEN}",
        rf"(?:我(?:认为|觉得|倾向于?|会选)|我的(?:选择|答案))(?:是|选)?{_OPEN}",
        rf"正确(?:的)?(?:选项|答案|选择)(?:应该|应)?(?:是|为)?{_OPEN}",
        # English: the answer is (C) / Answer: A / correct answer would be option B / answers are A and C
        rf"(?i:answer(?:\(s\)|s)?(?:\s+here)?(?:\s+(?:is|are|would be|should be|will be|must be|here is|is likely|is most likely|is probably|is clearly|is definitely))?)"
        rf"\s*(?i:option|choice|letter)?{_OPEN}",
        rf"(?i:\bI(?:\s+would|\s+will|'d|'ll|\s+am|'m)?\s+(?:choose|select|pick|go with|going with|say|opt for|answer))\s*(?i:option|choice)?{_OPEN}",
        rf"(?i:\b(?:correct|right|best|final)\s+(?:option|choice|response|selection|one)\s*(?:here\s+)?(?:is|would be)?)\s*(?i:option|choice)?{_OPEN}",
        rf"(?i:\b(?:my\s+)?(?:choice|selection|pick)\s*(?:is|:))\s*(?i:option)?{_OPEN}",
        rf"(?i:\b(?:correct|right)\s*:)\s*(?i:option)?{_OPEN}",
    ]
    stated = [
        # B is correct / option (B) is the best answer / A and C are correct / answer choice D is correct
        rf"(?i:\b(?:answer\s+)?(?:option|choice)\s*)?{deco_l}{G}{deco_r}\s+(?i:(?:is|are|would be|seems to be|appears to be|looks|remains)\s+"
        rf"(?:the\s+)?(?:most\s+)?(?:correct|right|best|true|appropriate|accurate|consistent|answer)\b)",
        rf"(?i:\bonly\s+(?:option\s+)?){deco_l}{G}{deco_r}\s+(?i:is\s+(?:correct|right))",
        rf"(?<![A-Za-z]){deco_l}{G}{deco_r}\s+(?i:fits|matches|best fits)\b",
        # B项正确 / 选项B是最佳答案 / C最恰当 / D对
        rf"(?:选项)?{deco_l}{G}{deco_r}\s*(?:项|选项)?\s*(?:都|均|皆)?\s*(?:是|为|的说法|的描述|说法|描述)?\s*(?:正确|对的|对(?![应照比于])|最佳|最合适|最恰当|最符合|最准确|符合题意|当选|是正确答案|是答案|为正确答案)",
        # the most likely diagnosis is C / the best next step is B / most appropriate treatment is option D
        rf"(?i:\b(?:most\s+(?:likely|probable|appropriate|accurate|consistent|suitable)|best|correct|right|preferred|first[-\s]line|first|initial|next)\b"
        rf"(?:[\s-]+[a-z-]+){{0,5}}?\s+(?:is|would be|=)\s*:?\s*(?:option\s+|choice\s+|answer\s+)?){deco_l}{G}",
        rf"(?i:\bmost\s+likely\s+(?:has|is|represents|reflects|suffers from|due to)\s+(?:option\s+)?){deco_l}{G}",
        # 最可能的诊断是C / 最佳处理为B / 首选药物是C / 正确的是B
        rf"(?:最(?:可能|有可能|佳|合适|恰当|准确|符合)|首选|正确)[\u4e00-\u9fff]{{0,8}}?(?:是|为)[:：\s]*(?:选项)?{deco_l}{G}",
        # not A, but C
        rf"(?i:\bnot\s+(?:option\s+)?[\(\[]?[A-Z][\)\]]?\s*,?\s*but\s+(?:rather\s+)?(?:option\s+)?){deco_l}{G}",
    ]
    weak_prefix = [
        rf"(?i:\b(?:it's|it is|it must be|it should be|must be|has to be|that's|so it's|thus it's|leaving|leaves|that leaves|which leaves))\s*[,:]?\s*(?i:option|choice)?\s*[\(\[]?",
        rf"(?i:\b(?:so|thus|therefore|hence))\s*[,:]?\s*(?i:option|choice)?\s*[\(\[]?(?=[A-Za-z][\s.。)\]]*$)",
        rf"(?i:\b(?:on (?:reflection|second thought|reconsideration)|after (?:all|reconsidering|review)|actually|final(?:ly)?|in the end|ultimately))"
        rf"\s*[,:]?\s*(?:it's\s+|option\s+|choice\s+)?[\(\[]?(?=[A-Za-z][\)\]]?\s*[.。!！]?\s*(?:$|\n))",
        rf"(?i:\b(?:option|choice))\s*[\(\[]?(?=[A-Za-z][\)\]]?\s*[.。!！]?\s*$)",
        rf"(?:而是|应该是|应是|应为|应当是|就是|所以是|因此是|故为|只剩|剩下)\s*[,，:：]?\s*(?:选项)?[\(（\[【]?",
        rf"(?:所以|因此|故|综上(?:所述)?)\s*[,，:：]?\s*(?:选项)?[\(（\[【]?(?=[A-Za-z][\s。.)）]*$)",
        # the reply ends with a lone letter sentence: "... so not B.\n\nC."
        rf"(?:^|[\n.。!！?？;；:：])\s*[\(\[【]?(?=[A-Za-z](?:{sep}[A-Za-z])*[\)\]】]?\s*[.。!！]?\s*$)",
    ]
    return _Pats(
        keys=keys,
        group=re.compile(grp),
        bare=re.compile(rf"[\s\(\[【\"'“]*(?i:option\s*|选项\s*)?({grp})[\s\)\]】\"'”.。:：,，、!！]*"),
        explicit=[re.compile(p) for p in explicit],
        stated=[re.compile(p) for p in stated],
        weak_prefix=[re.compile(p) for p in weak_prefix],
        leading=re.compile(rf"[\s\(\[【]*(?:(?i:option|choice)\s*|选项)?(?P<g>{grp})[ \t]*(?:[\)\]】.。:：、,，]|\s+[-—–]|\s*\n|\s+[\(（]|$)"),
        line_label=re.compile(rf"(?m)^[\s\-*]*[\(\[]?([{up}])[\)\].、:：]"),
    )


_cache: dict[str, _Pats] = {}


def _patterns(keys: str) -> _Pats:
    if keys not in _cache:
        _cache[keys] = _compile(keys)
    return _cache[keys]


# ------------------------------------------------------------------------------------------------
# Option texts

def _option_norm(opt: str) -> str:
    # the same normalisation as the reply (NFKC, no LaTeX/markdown decoration), minus final stops
    return _normalise(str(opt or "")).strip("。. ")


def _text_at(t: str, pos: int, options: dict[str, str]) -> str | None:
    """The option whose text starts at t[pos:] (longest wins; None when none or a tie)."""
    best, best_len, tie = None, 0, False
    rest = t[pos:]
    low = rest.lower()
    for key, opt in options.items():
        o = _option_norm(opt)
        if not o:
            continue
        if o.isascii():
            ok = low.startswith(o.lower()) and not re.match(r"[A-Za-z0-9]", rest[len(o):len(o) + 1])
        else:
            ok = rest.startswith(o)
        if ok:
            if len(o) > best_len:
                best, best_len, tie = key, len(o), False
            elif len(o) == best_len and key != best:
                tie = True
    return None if tie else best


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
            found = [m.start() for m in re.finditer(rf"(?<![A-Za-z0-9]){re.escape(opt_n)}(?![A-Za-z0-9])", hay)]
        else:
            found = [m.start() for m in re.finditer(re.escape(opt_n), hay)]
        # a mention right after a negation ("不是肋胸膜", "rather than heparin") is no claim
        found = [p for p in found if not _NEG_BEFORE.search(text[max(0, p - 14):p])
                 and not _LEAD_REJECT.match(text[p + len(opt_n):])]  # "肋胸膜……不符合题意"
        if found:
            hits[key] = found[0]
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
    key = min(hits, key=hits.get)
    after = text[first + len(_option_norm(options[key])):]
    # ... when it is a sentence of its own ("Yes. ..."), not "A或B" / "A和B都有可能"
    if first <= 2 and list(hits.values()).count(first) == 1 and re.match(r"\s*(?:[.。,，!！;；:：]|[-—–]\s)", after) \
            and not re.match(r"\s*[,，]?\s*(?i:or|and)\b", after):
        return key
    return None


# ------------------------------------------------------------------------------------------------
# Claims

@dataclass
class _Claim:
    pos: int
    end: int
    letters: str
    tier: str  # explicit | stated | leading | labelled
    hedge: bool = False
    conflict: bool = False


def _word_use(t: str, start: int, end: int, letter: str) -> bool:
    """True when the 'letter' is the English article a/A or the pronoun I, not an option key."""
    rest = t[end:]
    if letter == "I" and re.match(r"['’](?:m|d|ll|ve)\b", rest):
        return True
    if letter.islower() or letter in "AI":
        m = re.match(r"[ \t]+([A-Za-z0-9][\w'’-]*)", rest)
        if m and (m.group(1)[0].islower() or m.group(1)[0].isdigit()) and m.group(1).lower() not in _CONNECT:
            return True
        if letter.islower() and re.match(r"[-'’][A-Za-z]", rest):
            return True
    return False


def _make_claim(t: str, start: int, group: str, tier: str, keys: str, options: dict[str, str]) -> _Claim | None:
    end = start + len(group)
    # a "letter" that starts an option's text ("D-二聚体含量", "B超检查") names that option
    key = _text_at(t, start, options)
    if key is not None and _option_norm(options[key])[:1] == group[:1] and len(_option_norm(options[key])) > len(group.rstrip()):
        n = len(_option_norm(options[key]))
        return _Claim(start, start + n, key, tier)
    # ... and so does a letter inside an option's text ("维生素A是正确的" where 维生素A is B)
    g1 = group.strip()
    if len(g1) == 1:
        for k, opt in options.items():
            o = _option_norm(opt)
            if len(o) <= 1:
                continue
            for i, ch in enumerate(o):
                s0 = start - i
                if ch == g1 and s0 >= 0 and (t[s0:s0 + len(o)].lower() == o.lower() if o.isascii() else t[s0:s0 + len(o)] == o):
                    return _Claim(s0, s0 + len(o), k, tier)
    letters_in = [c for c in re.sub(r"(?i:\band\b|\bor\b)", " ", group) if c.upper() in keys and c.isalpha()]
    if not letters_in:
        return None
    last = group.rstrip()[-1]
    if _word_use(t, start, end, last) or (len(letters_in) == 1 and _word_use(t, start, end, letters_in[0])):
        return None
    letters = "".join(sorted({c.upper() for c in letters_in}))
    hedge = bool(_HEDGE_SEP.search(group)) and len(letters) > 1
    if _NEG_BEFORE.search(t[max(0, start - 14):start]) or _NEG_AFTER.match(t[end:]):
        return None
    c = _Claim(start, end, letters, tier, hedge=hedge)
    if len(letters) == 1:
        m = re.match(_TIGHT, t[end:])
        if m:
            other = _text_at(t, end + m.end(), options)
            if other is not None and other != letters:
                c.conflict = True
    return c


def _explicit_claims(t: str, p: _Pats, options: dict[str, str]) -> list[_Claim]:
    claims: dict[int, _Claim] = {}
    for pat in p.explicit:
        for m in pat.finditer(t):
            e = m.end()
            g = p.group.match(t, e)
            c = None
            if g:
                c = _make_claim(t, e, g.group(0), "explicit", p.keys, options)
            if c is None:
                key = _text_at(t, e, options)
                if key is not None:
                    end = e + len(_option_norm(options[key]))
                    c = _Claim(e, end, key, "explicit")
                    # "the answer is yes or no" / "答案是A或B的文字"
                    h = re.match(r"\s*(?:(?i:\bor\b)|或者|或|还是|/)\s*", t[end:])
                    if h and _text_at(t, end + h.end(), options) not in (None, key):
                        c.hedge = True
            if c is not None and c.pos not in claims:
                claims[c.pos] = c
    return sorted(claims.values(), key=lambda c: c.pos)


def _stated_claims(t: str, p: _Pats, options: dict[str, str]) -> list[_Claim]:
    claims: dict[int, _Claim] = {}
    for pat in p.stated:
        for m in pat.finditer(t):
            c = _make_claim(t, m.start("g"), m.group("g"), "stated", p.keys, options)
            if c is not None:
                claims.setdefault(c.pos, c)
    for i, pat in enumerate(p.weak_prefix):
        for m in pat.finditer(t):
            g = p.group.match(t, m.end())
            # a lone final letter right after a label is that label's option text ("B. C" where B is "C")
            if g and i == len(p.weak_prefix) - 1 and re.search(r"(?:^|\n)\s*[\(\[]?[A-Z][\)\]]?\s*[.:：]?\s*$", t[:m.start() + 1]):
                continue
            if g:
                c = _make_claim(t, m.end(), g.group(0), "stated", p.keys, options)
                if c is not None:
                    claims.setdefault(c.pos, c)
    return sorted(claims.values(), key=lambda c: c.pos)


def _enumeration(t: str, p: _Pats, options: dict[str, str]) -> bool:
    """The reply lists options (line labels or "X. <X's text>" for two or more keys)."""
    if len(set(p.line_label.findall(t))) >= 2:
        return True
    return len(_labelled(t, p, options)) >= 2


def _labelled(t: str, p: _Pats, options: dict[str, str], claims_only: bool = False) -> dict[str, int]:
    """Keys written next to their own option text: "C“膈胸膜”", "(B) Heparin", "D——腺癌"."""
    out: dict[str, int] = {}
    for key, opt in options.items():
        o = _option_norm(opt)
        if not o or key not in p.keys:
            continue
        pat = rf"(?<![A-Za-z0-9])[\(\[【]?{re.escape(key)}[\)\]】]?[\s.:：、,，\-—–]*[\"“「『《（(]?{re.escape(o)}"
        m = re.search(pat, t, flags=re.I if o.isascii() else 0)
        if m and not _NEG_BEFORE.search(t[max(0, m.start() - 14):m.start()]):
            if claims_only and _LEAD_REJECT.match(t[m.end():]):
                continue  # "A. 肋胸膜属于壁胸膜，不符合题意"
            out[key] = m.start()
    return out


def _resolve(claims: list[_Claim], t: str) -> tuple[_Claim | None, str | None]:
    """The last claim, unless an earlier different one stands without a correction in between."""
    if not claims:
        return None, None
    last = claims[-1]
    for c in claims[:-1]:
        if c.letters != last.letters and not _CORRECTION.search(t[c.pos:last.pos]):
            return None, "conflict"
    if last.hedge:
        return None, "hedge"
    if last.conflict:
        return None, "conflict"
    return last, None


# ------------------------------------------------------------------------------------------------
# Answer fields

_TAG = re.compile(r"<\s*(?:answer|final_answer|final answer|ans|答案)\s*>(.*?)<\s*/\s*(?:answer|final_answer|final answer|ans|答案)\s*>",
                  re.I | re.S)
_JSON = re.compile(r"[\"']?(?:final_answer|answer|correct_answer|答案|choice)[\"']?\s*:\s*(\[[^\]]*\]|\"[^\"]*\"|'[^']*')", re.I)
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")


def _fields(raw: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every answer field in the (think-stripped, NFKC) reply."""
    out = [(m.start(), m.end(), m.group(1)) for m in _TAG.finditer(raw)]
    for m in _JSON.finditer(raw):
        v = m.group(1)
        try:
            val = json.loads(v) if not v.startswith("'") else v.strip("'")
        except json.JSONDecodeError:
            val = v.strip("\"'[]")
        if isinstance(val, list):
            val = ", ".join(str(x) for x in val)
        out.append((m.start(), m.end(), str(val)))
    out += [(m.start(), m.end(), m.group(1)) for m in _BOXED.finditer(raw)]
    return sorted(out)


def _fragment(content: str, options: dict[str, str], p: _Pats) -> Extraction | None:
    """What one answer field says: letters, a label, or one option's text."""
    t = _normalise(content)
    if not t:
        return None
    m = p.bare.fullmatch(t)
    if m:
        c = _make_claim(t, m.start(1), m.group(1), "explicit", p.keys, options)
        if c is not None:
            if c.hedge:
                return Extraction(None, "hedge")
            return Extraction(c.letters, "tagged")
    m = p.leading.match(t)
    if m:
        c = _make_claim(t, m.start("g"), m.group("g"), "leading", p.keys, options)
        if c is not None:
            return Extraction(None, "conflict") if c.conflict else Extraction(c.letters, "tagged")
    key = _text_at(t, 0, options)
    if key is not None:
        return Extraction(key, "tagged")
    return None


# ------------------------------------------------------------------------------------------------

def _finish(ext: Extraction, multi: bool | None) -> Extraction:
    if ext.letters is not None and multi is False and len(ext.letters) > 1:
        return Extraction(None, "ambiguous")
    return ext


def extract_choice(text: str | None, options: dict[str, str], *, multi: bool | None = None) -> Extraction:
    """Chosen option key(s) from a free-text reply.

    multi: True for an item that allows several answers, False for a single-answer item (several
    letters are then invalid), None when unknown: a reply naming several letters is kept as given
    (for a single-answer item it is then simply wrong), never trimmed to its first letter.
    """
    keys = "".join(sorted(k for k in options if len(k) == 1 and k.isupper())) or "ABCD"
    p = _patterns(keys)
    raw = unicodedata.normalize("NFKC", text or "").strip()
    if not raw:
        return Extraction(None, "empty")
    raw, had_think = _strip_reasoning(raw)
    if not raw:
        return Extraction(None, "think_only" if had_think else "empty")

    # 1. answer fields (the last one wins); prose after it that names another letter is a conflict
    fields = _fields(raw)
    for pos, fend, content in reversed(fields):
        ext = _fragment(content, options, p)
        if ext is None:
            continue
        if ext.letters is not None:
            after = _normalise(_BOXED.sub(" ", _TAG.sub(" ", raw[fend:])))
            later = _explicit_claims(after, p, options) + _stated_claims(after, p, options)
            if any(c.letters != ext.letters for c in later):
                return Extraction(None, "conflict")
        return _finish(ext, multi)

    t = _normalise(_BOXED.sub(lambda m: f" {m.group(1)} ", raw))
    if not t:
        return Extraction(None, "empty")

    # 2. the whole reply is the letter(s)
    m = p.bare.fullmatch(t)
    if m:
        c = _make_claim(t, m.start(1), m.group(1), "explicit", keys, options)
        if c is not None:
            if c.hedge:
                return Extraction(None, "hedge")
            return _finish(Extraction(c.letters, "bare"), multi)

    stated = _stated_claims(t, p, options)

    def hedged_after(c: _Claim) -> bool:
        """'B is also possible' / 'D也有可能' after the answer (not for multi-answer items)."""
        if multi:
            return False
        for h in _HEDGE_AFTER.finditer(t, c.end):
            letter = next((g for g in h.groups() if g), None)
            if letter and letter in keys and letter not in c.letters:
                return True
        return False

    def check_after(c: _Claim) -> str | None:
        """A later weaker claim naming other letters (with no correction between) is a conflict."""
        for s in stated:
            if s.pos > c.end and s.letters != c.letters and not _CORRECTION.search(t[c.pos:s.pos]):
                return "conflict"
        return "hedge" if hedged_after(c) else None

    # 3. explicit statements
    explicit = _explicit_claims(t, p, options)
    if explicit:
        c, why = _resolve(explicit, t)
        if c is None:
            return Extraction(None, why or "conflict")
        why = check_after(c)
        if why:
            return Extraction(None, why)
        return _finish(Extraction(c.letters, "explicit"), multi)

    # 4. weaker statements and a leading label, resolved together
    enum = _enumeration(t, p, options)
    pool = list(stated)
    m = p.leading.match(t)
    if m and not enum:
        c = _make_claim(t, m.start("g"), m.group("g"), "leading", keys, options)
        if c is not None and _LEAD_REJECT.match(t[c.end:].lstrip(" \t.:：、)]）】")):
            c = None
        if c is not None and all(s.pos != c.pos for s in pool):
            pool.append(c)
    if not pool and not enum:
        # "B 棘孔" / "C“膈胸膜”" / "……我选的是C（膈胸膜）……": a key next to its own option text
        lab = _labelled(t, p, options, claims_only=True)
        if len(lab) == 1:
            key, pos = next(iter(lab.items()))
            c = _make_claim(t, pos + (1 if t[pos] in "([【" else 0), key, "labelled", keys, options) or \
                _Claim(pos, pos + 1, key, "labelled")
            pool.append(c)
    if pool:
        pool.sort(key=lambda c: c.pos)
        c, why = _resolve(pool, t)
        if c is None:
            return Extraction(None, why or "conflict")
        if hedged_after(c):
            return Extraction(None, "hedge")
        method = {"stated": "stated_correct", "leading": "leading", "labelled": "labelled"}[c.tier]
        return _finish(Extraction(c.letters, method), multi)

    # a key written next to another option's text ("C“胸部 CT 平扫”" where that is B): two readings
    for m in re.finditer(rf"(?<![A-Za-z0-9])[\(\[【]?([{keys}])[\)\]】]?", t):
        if _word_use(t, m.start(1), m.start(1) + 1, m.group(1)):
            continue
        g = re.match(_TIGHT, t[m.end():])
        other = _text_at(t, m.end() + g.end(), options) if g else None
        if other is not None and other != m.group(1):
            return Extraction(None, "conflict")

    # 5. option text; refusals and hedges are invalid
    refusal = bool(_REFUSAL.search(t))
    key = _option_text_match(t, options)
    if key is not None and not refusal:
        return _finish(Extraction(key, "option_text"), multi)
    if refusal:
        return Extraction(None, "refusal")
    if re.search(rf"(?i:\beither\b|\bbetween\b)|[{keys}]\s*(?:\bor\b|或者|或|还是)\s*[{keys}]", t):
        return Extraction(None, "hedge")
    return Extraction(None, "none")


def is_correct(extraction: Extraction, answer: str) -> bool:
    """Exact set match of chosen and keyed letters; an invalid extraction is never correct."""
    if extraction.letters is None:
        return False
    gold = "".join(sorted(set(unicodedata.normalize("NFKC", answer or "").upper().replace(",", "").replace(" ", ""))))
    return extraction.letters == gold
