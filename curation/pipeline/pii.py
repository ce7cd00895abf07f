"""Personal information (PII) detection and redaction, zh + en (docs/METHODS.md 1.2: drop or redact
documents with private information: phone numbers, ID numbers, e-mails...).

Why not presidio-analyzer: its recognisers need a spaCy language model downloaded at run time
(not allowed here) and it has no Chinese resident-ID or UnionPay recogniser. Phone numbers go
through `phonenumbers` (Google's libphonenumber port: real numbering plans for CN and every
other region); the checksum-validated identifiers (resident ID mod 11-2, Luhn) are a few lines
each and written here.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import date

from curation.pipeline.textutil import is_cjk_text

PII_TYPES = ("email", "phone", "cn_id", "bank_card", "ip", "personal_url")

# Placeholders written by `redact`; the bracket form never re-matches any detector.
PLACEHOLDERS = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "cn_id": "[ID_NUMBER]",
    "bank_card": "[BANK_CARD]",
    "ip": "[IP]",
    "personal_url": "[URL]",
}


@dataclass(frozen=True)
class PiiSpan:
    type: str
    start: int
    end: int
    text: str

    def as_dict(self) -> dict:
        return {"type": self.type, "start": self.start, "end": self.end, "text": self.text}


_EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![\w-])")

# 18-digit resident ID (GB 11643-1999): 6 area digits, YYYYMMDD birth date, 3 sequence digits, check.
_CN_ID_RE = re.compile(r"(?<![0-9A-Za-z])([1-9]\d{5})((?:18|19|20)\d{2})(\d{2})(\d{2})(\d{3})([0-9Xx])(?![0-9A-Za-z])")
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"

# 13-19 digits, optionally grouped by single spaces/dashes (as cards are printed), then Luhn.
_CARD_RE = re.compile(r"(?<![\d.,])(?:\d[ -]?){12,18}\d(?![\d.,]|[-][\d])")

# Neighbouring "-" excluded: dental formulas and section numbers ("1-3.1.4.2-3") are not addresses.
_IPV4_RE = re.compile(r"(?<![\w.\-])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d|-\d)")
_IPV6_RE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}(?::|[0-9A-Fa-f]{1,4})(?:[0-9A-Fa-f:]*)(?![\w:])")

_URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"'\u3000-\u303f\uff00-\uffef]+", re.IGNORECASE)
# Path / query shapes that name a person: ~user, /users/<x>, /u/<x>, /home/<x>, profiles,
# and query keys carrying identifiers.
_PERSONAL_PATH_RE = re.compile(
    r"(/~[\w.-]+|/(?:users?|u|home|profiles?|people|members?|space|author|account|my)/[\w.%-]+"
    r"|[?&](?:uid|user(?:_?id|name)?|email|phone|mobile|tel|id_?card|name)=[^&\s]+)",
    re.IGNORECASE,
)

# A digit run long enough to be a phone number: cheap gate before the (slow) phonenumbers matcher.
_PHONE_GATE_RE = re.compile(r"\d[\d \-()]{5,}\d")


_NANP_RE = re.compile(r"(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4}")
_DATE_LIKE_RE = re.compile(r"(?:18|19|20)\d{2}[-/.年]\d{1,2}[-/.月]\d{1,2}")


def _plausible_phone(raw: str) -> bool:
    """Reject what libphonenumber accepts in CN's lenient national plan but people don't write.

    In Chinese text, "1600-1800", "29000-24000" and "(2011-05-0519" parse as valid CN landlines.
    A number written without an international prefix must look like a real mainland number:
    a mobile (11 digits, 1[3-9]...), a trunk-prefixed landline (0 + area code + number, 10-12
    digits) or a 400/800 service number.
    """
    if _DATE_LIKE_RE.search(raw):
        return False
    digits = re.sub(r"\D", "", raw)
    if raw.lstrip("( ").startswith(("+", "00")):
        return True
    return bool(
        re.fullmatch(r"1[3-9]\d{9}", digits)
        or (digits.startswith("0") and 10 <= len(digits) <= 12)
        or re.fullmatch(r"[48]00\d{7}", digits)
    )


def cn_id_valid(s: str) -> bool:
    """True for an 18-character resident ID with a real birth date and a correct mod 11-2 check digit."""
    m = _CN_ID_RE.fullmatch(s)
    if not m:
        return False
    try:
        born = date(int(m.group(2)), int(m.group(3)), int(m.group(4)))
    except ValueError:
        return False
    if born > date.today():
        return False
    total = sum(int(d) * w for d, w in zip(s[:17], _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11] == s[17].upper()


def luhn_valid(digits: str) -> bool:
    """Luhn mod-10 check (ISO/IEC 7812) over a string of digits."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _overlaps(start: int, end: int, taken: list[tuple[int, int]]) -> bool:
    return any(start < e and s < end for s, e in taken)


def detect(text: str, types: tuple[str, ...] | list[str] = PII_TYPES, phone_region: str = "CN") -> list[PiiSpan]:
    """All PII spans in `text`, non-overlapping, sorted by start.

    Order matters: checksum-validated IDs and cards are claimed before the phone matcher, so a
    resident ID is never also reported as a phone number.
    """
    wanted = set(types)
    spans: list[PiiSpan] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, start: int, end: int) -> None:
        if not _overlaps(start, end, taken):
            taken.append((start, end))
            spans.append(PiiSpan(kind, start, end, text[start:end]))

    if "personal_url" in wanted or "email" in wanted:
        for m in _URL_RE.finditer(text):
            url = m.group(0).rstrip(".,;:!?)]}")
            if "personal_url" in wanted and _PERSONAL_PATH_RE.search(url):
                add("personal_url", m.start(), m.start() + len(url))
            else:
                # A non-personal URL is claimed silently so that digits in it are not read as phones.
                taken.append((m.start(), m.start() + len(url)))
    if "email" in wanted:
        for m in _EMAIL_RE.finditer(text):
            add("email", m.start(), m.end())
    if "cn_id" in wanted:
        for m in _CN_ID_RE.finditer(text):
            if cn_id_valid(m.group(0)):
                add("cn_id", m.start(), m.end())
    if "bank_card" in wanted:
        for m in _CARD_RE.finditer(text):
            raw = m.group(0)
            digits = re.sub(r"[ -]", "", raw)
            if 13 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 2:
                add("bank_card", m.start(), m.end())
    if "ip" in wanted:
        for m in _IPV4_RE.finditer(text):
            try:
                ip = ipaddress.IPv4Address(m.group(0))
            except ValueError:
                continue
            # all-single-digit quads (1.2.3.4, 8.8.8.8) are list numbering or public resolvers
            if not ip.is_unspecified and any(len(o) > 1 for o in m.group(0).split(".")):
                add("ip", m.start(), m.end())
        if ":" in text:
            for m in _IPV6_RE.finditer(text):
                try:
                    ipaddress.IPv6Address(m.group(0))
                except ValueError:
                    continue
                add("ip", m.start(), m.end())
    if "phone" in wanted and _PHONE_GATE_RE.search(text):
        import phonenumbers
        from phonenumbers import Leniency, PhoneNumberMatcher

        # VALID leniency: the number must fit a real numbering plan (so lab values, dates and
        # doses are not phones); "+CC ..." numbers are parsed in their own region.
        for match in PhoneNumberMatcher(text, phone_region, leniency=Leniency.VALID):
            if phonenumbers.is_valid_number(match.number) and _plausible_phone(match.raw_string):
                add("phone", match.start, match.end)
        # English text also writes North American numbers without "+1": "(202) 225-2815"
        if phone_region != "US" and not is_cjk_text(text):
            for match in PhoneNumberMatcher(text, "US", leniency=Leniency.VALID):
                if _NANP_RE.fullmatch(match.raw_string.strip()) and phonenumbers.is_valid_number(match.number):
                    add("phone", match.start, match.end)
    spans.sort(key=lambda s: s.start)
    return spans


def counts(spans: list[PiiSpan]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in spans:
        out[s.type] = out.get(s.type, 0) + 1
    return out


def redact(text: str, spans: list[PiiSpan] | None = None, types: tuple[str, ...] | list[str] = PII_TYPES) -> str:
    """Replace each PII span with its placeholder ([PHONE], [EMAIL], ...)."""
    if spans is None:
        spans = detect(text, types)
    out: list[str] = []
    pos = 0
    for s in sorted(spans, key=lambda s: s.start):
        out.append(text[pos : s.start])
        out.append(PLACEHOLDERS[s.type])
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


def redact_content(content: dict, types: tuple[str, ...] | list[str] = PII_TYPES) -> tuple[dict, dict[str, int]]:
    """A redacted deep copy of a normalised record's content, and the counts of what was replaced.

    Every string in the content is redacted (turns, options, meta...), keys are left alone.
    """
    total: dict[str, int] = {}

    def walk(value):
        if isinstance(value, str):
            spans = detect(value, types)
            for k, v in counts(spans).items():
                total[k] = total.get(k, 0) + v
            return redact(value, spans) if spans else value
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(content), total


class PiiScorer:
    """Per-record PII scorer: value = number of PII spans; drop if more than `max_hits`."""

    name = "pii"
    version = "1"

    def __init__(self, types: list[str] | tuple[str, ...] = PII_TYPES, max_hits: int = 0, phone_region: str = "CN"):
        unknown = set(types) - set(PII_TYPES)
        if unknown:
            raise ValueError(f"unknown PII types {sorted(unknown)}; known: {', '.join(PII_TYPES)}")
        self.types = tuple(types)
        self.max_hits = int(max_hits)
        self.phone_region = phone_region

    def score_batch(self, records):
        from curation.pipeline.base import ScoreResult

        results = []
        for rec in records:
            spans = detect(rec.text, self.types, self.phone_region)
            c = counts(spans)
            n = len(spans)
            keep = n <= self.max_hits
            # the most frequent type is the reason, so per-reason counts stay an indexed SQL aggregate
            reason = "" if keep else "pii:" + max(c, key=c.get)
            results.append(
                ScoreResult(
                    value=float(n),
                    keep=keep,
                    reason=reason,
                    detail={"counts": c, "spans": [s.as_dict() for s in spans[:50]]},
                )
            )
        return results
