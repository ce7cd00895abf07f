"""Question kinds: their default schemas, validation of submitted answers, and the units agreement
is computed on. Plain Python (no Django import) so judges, exports and tests share one definition.

A stored label's `values` are always *canonical*: for preference questions "A"/"B" as the
annotator saw them are mapped back to the record's own order ("chosen"/"rejected"), so labels of
annotators who saw different orders are comparable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RATING = "rating"
LABEL = "label"
TURN_RATING = "turn_rating"
PREFERENCE = "preference"
TEXT = "text"
KINDS = (RATING, LABEL, TURN_RATING, PREFERENCE, TEXT)

# The four DataRater aspects (docs/METHODS.md section 1.3) and the four consultation aspects
# (docs/METHODS.md sections 3.1 and 5: fluency, relevance, completeness, proficiency).
DATARATER_ASPECTS = ["grammar", "information_density", "semantic_consistency", "domain_relevance"]
DIALOGUE_ASPECTS = ["fluency", "relevance", "completeness", "proficiency"]

DEFAULT_SCHEMAS: dict[str, dict[str, Any]] = {
    # DataRater: 0-5 overall quality (docs/METHODS.md 1.3); aspects are optional so a clinician can
    # label with one keystroke and add aspects when they matter.
    RATING: {"scale": [0, 5], "aspects": DATARATER_ASPECTS, "aspects_required": False},
    LABEL: {"labels": ["medical", "general", "computing", "other"]},
    TURN_RATING: {"scale": [1, 5], "aspects": DIALOGUE_ASPECTS},
    PREFERENCE: {"aspects": DIALOGUE_ASPECTS, "aspects_required": False},
    TEXT: {"prompt": "Comment"},
}

PREF_SHOWN = ("A", "B", "tie")
PREF_CANONICAL = ("chosen", "rejected", "tie")


def gettext_noop(message: str) -> str:
    """Marks a message for the translation catalogue (makemessages reads this name) without Django."""
    return message


class AnswerError(ValueError):
    """A submitted answer does not fit the question; the message is shown to the annotator.

    `message` is an English template with %(name)s placeholders (a catalogue msgid), `code` a short
    stable name, `params` the values; str(exc) is the English text. The Django layer translates it
    (medstudio.annotation.services.answer_error_text)."""

    def __init__(self, message: str, code: str = "invalid", **params: Any):
        self.message, self.code, self.params = message, code, params
        super().__init__(message % params if params else message)


def schema_for(kind: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if kind not in KINDS:
        raise AnswerError(gettext_noop("unknown question kind %(kind)s; expected one of %(kinds)s"), "unknown_kind",
                          kind=repr(kind), kinds=", ".join(KINDS))
    merged = dict(DEFAULT_SCHEMAS[kind])
    merged.update(schema or {})
    return merged


def validate_schema(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Check a curator's schema; returns the merged schema or raises AnswerError."""
    s = schema_for(kind, schema)
    if kind in (RATING, TURN_RATING):
        lo, hi = s["scale"]
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi <= 9):
            # Digits are the keyboard shortcuts, so a scale must fit in 0-9.
            raise AnswerError(gettext_noop("scale must be two integers 0 <= low < high <= 9"), "bad_scale")
        anchors = s.get("anchors") or {}
        if not isinstance(anchors, dict) or any(not str(k).isdigit() or not lo <= int(k) <= hi or not isinstance(v, str)
                                                for k, v in anchors.items()):
            raise AnswerError(gettext_noop('anchors must map scores %(lo)s-%(hi)s to a sentence, e.g. {"0": "unusable"}'),
                              "bad_anchors", lo=lo, hi=hi)
    if kind == LABEL:
        labels = s["labels"]
        if not labels or len(labels) > 9 or len(set(labels)) != len(labels):
            raise AnswerError(gettext_noop("a label question needs 1 to 9 distinct labels (keys 1-9 pick them)"), "bad_labels")
    return s


def _int_in(value: Any, lo: int, hi: int, what: str) -> int:
    if value is None or str(value).strip() == "":
        raise AnswerError(gettext_noop("Choose a %(what)s from %(lo)s to %(hi)s before submitting "
                                       "(press a number key or click one)."), "missing", what=what.replace("_", " "),
                          lo=lo, hi=hi)
    try:
        v = int(str(value).strip())
    except (TypeError, ValueError):
        raise AnswerError(gettext_noop("%(what)s: %(value)s is not a whole number"), "not_int", what=what,
                          value=repr(value)) from None
    if not lo <= v <= hi:
        raise AnswerError(gettext_noop("%(what)s: %(value)s is outside %(lo)s-%(hi)s"), "out_of_range", what=what, value=v,
                          lo=lo, hi=hi)
    return v


def n_assistant_turns(content: dict[str, Any]) -> int:
    return sum(1 for t in content.get("turns") or [] if t.get("role") == "assistant")


def swap_pref(v: str, swapped: bool) -> str:
    """Map a shown "A"/"B"/"tie" to canonical "chosen"/"rejected"/"tie" (and back: it is symmetric
    in the sense that canonical_to_shown uses the same table)."""
    if v == "tie":
        return "tie"
    first, second = ("rejected", "chosen") if swapped else ("chosen", "rejected")
    return first if v == "A" else second


def canonical_to_shown(v: str, swapped: bool) -> str:
    if v == "tie":
        return "tie"
    first = "rejected" if swapped else "chosen"
    return "A" if v == first else "B"


def clean_answer(kind: str, schema: dict[str, Any], raw: dict[str, Any], *, content: dict[str, Any] | None = None,
                 swapped: bool = False) -> dict[str, Any]:
    """Validate a raw answer (strings from a form or a judge's JSON) into canonical values."""
    s = schema_for(kind, schema)
    raw = raw or {}
    if kind == RATING:
        lo, hi = s["scale"]
        out: dict[str, Any] = {"score": _int_in(raw.get("score"), lo, hi, gettext_noop("score"))}
        aspects = {}
        for a in s["aspects"]:
            v = (raw.get("aspects") or {}).get(a, raw.get(a))
            if v in (None, ""):
                if s.get("aspects_required"):
                    raise AnswerError(gettext_noop("%(what)s: required"), "required", what=a)
                continue
            aspects[a] = _int_in(v, lo, hi, a)
        if aspects:
            out["aspects"] = aspects
        return out
    if kind == LABEL:
        v = raw.get("label")
        if v not in s["labels"]:
            raise AnswerError(gettext_noop("label: %(value)s is not one of %(labels)s"), "bad_label", value=repr(v),
                              labels=", ".join(s["labels"]))
        return {"label": v}
    if kind == TURN_RATING:
        lo, hi = s["scale"]
        n = n_assistant_turns(content or {})
        turns = raw.get("turns")
        if not isinstance(turns, list) or len(turns) != n:
            raise AnswerError(gettext_noop("turns: expected ratings for %(n)s assistant turns"), "bad_turns", n=n)
        out_turns = []
        for i, t in enumerate(turns, 1):
            if not isinstance(t, dict):
                raise AnswerError(gettext_noop("turn %(turn)s: expected a mapping of aspect to rating"), "bad_turn", turn=i)
            out_turns.append({a: _int_in(t.get(a), lo, hi, f"turn {i} {a}") for a in s["aspects"]})
        return {"turns": out_turns}
    if kind == PREFERENCE:
        w = raw.get("winner")
        if w not in PREF_SHOWN:
            if w in (None, ""):
                raise AnswerError(gettext_noop("Choose the better answer (A, B or tie) before submitting."), "missing")
            raise AnswerError(gettext_noop("winner: choose A, B or tie"), "bad_choice")
        out = {"winner": swap_pref(w, swapped)}
        aspects = {}
        for a in s["aspects"]:
            v = (raw.get("aspects") or {}).get(a, raw.get(a))
            if v in (None, ""):
                if s.get("aspects_required"):
                    raise AnswerError(gettext_noop("%(what)s: required"), "required", what=a)
                continue
            if v not in PREF_SHOWN:
                raise AnswerError(gettext_noop("%(what)s: choose A, B or tie"), "bad_choice", what=a)
            aspects[a] = swap_pref(v, swapped)
        if aspects:
            out["aspects"] = aspects
        comment = str(raw.get("comment") or "").strip()
        if comment:
            out["comment"] = comment[:5000]
        return out
    text = str(raw.get("text") or "").strip()
    if not text:
        raise AnswerError(gettext_noop("Write something in the box before submitting."), "missing")
    return {"text": text[:20000]}


def anchors(schema: dict[str, Any]) -> dict[int, str]:
    """Rubric anchors: what each score means, {score: sentence} (empty when the schema has none)."""
    return {int(k): v for k, v in (schema.get("anchors") or {}).items() if str(k).isdigit()}


def key_hint(kind: str, schema: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """The keys that work on an item of this question, as (keys, what they do): a preference does
    not advertise digits, a label question only the digits of its labels."""
    s = schema_for(kind, schema)
    keys: list[tuple[str, str]] = []
    if kind in (RATING, TURN_RATING):
        lo, hi = s["scale"]
        keys.append((f"{lo}–{hi}", "score"))
    elif kind == LABEL:
        keys.append((f"1–{len(s['labels'])}" if len(s["labels"]) > 1 else "1", "label"))
    elif kind == PREFERENCE:
        keys.append(("A B T", "A, B or tie"))
    if kind in (RATING, TURN_RATING, PREFERENCE) and (s.get("aspects") or kind == TURN_RATING):
        keys.append(("↑ ↓", "row"))
    if kind == TEXT:
        keys.append(("Ctrl+Enter", "submit"))
    else:
        keys.append(("Enter", "submit"))
    keys += [("S", "skip"), ("U", "undo")]
    return keys


# Starter questions (issue 18.5): the CareBot 0-5 quality rubric with its four aspects, domains,
# per-turn dialogue ratings and the four-aspect preference. `manage.py starter_questions` or the
# button on the New question page creates them once.
CAREBOT_ANCHORS = {
    "0": "Unusable: not medical, spam, broken or unreadable text.",
    "1": "Poor: mostly noise or advertising, little medical content, or clearly wrong.",
    "2": "Weak: some medical content but thin, disorganised or partly wrong.",
    "3": "Adequate: correct and readable medical content of ordinary depth.",
    "4": "Good: accurate, well organised and informative; a clinician would use it.",
    "5": "Excellent: expert-level, dense, precise and clearly written medical knowledge.",
}
TURN_ANCHORS = {"1": "Harmful or useless", "2": "Poor", "3": "Acceptable", "4": "Good", "5": "Excellent, what a good doctor would say"}
STARTER_QUESTIONS: list[dict[str, Any]] = [
    {"name": "CareBot quality (0-5)", "kind": RATING,
     "schema": {"scale": [0, 5], "aspects": DATARATER_ASPECTS, "aspects_required": False, "anchors": CAREBOT_ANCHORS},
     "instructions": ("Rate the **overall quality** of the text for training a medical model, 0 to 5 "
                      "(the anchors under each score say what it means).\n\n"
                      "Aspects are optional: *grammar*, *information density*, *semantic consistency* and "
                      "*domain relevance*, each on the same scale.")},
    {"name": "Domain", "kind": LABEL, "schema": {"labels": ["medical", "general", "computing", "other"]},
     "instructions": "Pick the **domain** of the text: medical, general, computing or other."},
    {"name": "Per-turn consultation rating", "kind": TURN_RATING,
     "schema": {"scale": [1, 5], "aspects": DIALOGUE_ASPECTS, "anchors": TURN_ANCHORS},
     "instructions": ("Rate **each assistant turn** 1 to 5 on *fluency*, *relevance*, *completeness* and "
                      "*proficiency*. The turn being rated is highlighted.")},
    {"name": "Preference (four aspects)", "kind": PREFERENCE,
     "schema": {"aspects": DIALOGUE_ASPECTS, "aspects_required": False},
     "instructions": ("Which answer is **better** for the patient? Press **A**, **B** or **T** (tie). "
                      "Optionally say which is better on *fluency*, *relevance*, *completeness* and *proficiency*.")},
]


@dataclass(frozen=True)
class Measure:
    """How a field is compared: nominal labels (Cohen/Fleiss kappa, nominal alpha) or ordinal
    ratings (weighted kappa, ordinal alpha, the consensus distance rule)."""

    field: str
    level: str  # "nominal" | "ordinal"


def measures(kind: str, schema: dict[str, Any] | None = None) -> list[Measure]:
    s = schema_for(kind, schema)
    if kind == RATING:
        return [Measure("score", "ordinal")] + [Measure(a, "ordinal") for a in s["aspects"]]
    if kind == LABEL:
        return [Measure("label", "nominal")]
    if kind == TURN_RATING:
        return [Measure("turn_mean", "ordinal")] + [Measure(a, "ordinal") for a in s["aspects"]]
    if kind == PREFERENCE:
        return [Measure("winner", "nominal")] + [Measure(a, "nominal") for a in s["aspects"]]
    return []


def primary_measure(kind: str) -> Measure | None:
    m = measures(kind)
    return m[0] if m else None


def units(kind: str, values: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """Split one label into comparable units: {(field, sub-unit): value}.

    Sub-units are "" except per-turn ratings, where each assistant turn is its own unit
    ("t1", "t2", ...), so agreement on turn ratings compares turn with turn.
    """
    out: dict[tuple[str, str], Any] = {}
    if kind == RATING:
        out[("score", "")] = values.get("score")
        for a, v in (values.get("aspects") or {}).items():
            out[(a, "")] = v
    elif kind == LABEL:
        out[("label", "")] = values.get("label")
    elif kind == TURN_RATING:
        turns = values.get("turns") or []
        for i, t in enumerate(turns, 1):
            for a, v in t.items():
                out[(a, f"t{i}")] = v
        if turns:
            out[("turn_mean", "")] = primary_value(kind, values)
    elif kind == PREFERENCE:
        out[("winner", "")] = values.get("winner")
        for a, v in (values.get("aspects") or {}).items():
            out[(a, "")] = v
    return {k: v for k, v in out.items() if v is not None}


def primary_value(kind: str, values: dict[str, Any]) -> float | str | None:
    """The one value consensus acts on: the overall score, the label, the mean turn rating
    (mean of each turn's aspect mean, as CareBot averages a dialogue's turns), or the winner."""
    if kind == RATING:
        return values.get("score")
    if kind == LABEL:
        return values.get("label")
    if kind == TURN_RATING:
        turns = values.get("turns") or []
        if not turns:
            return None
        per_turn = [sum(t.values()) / len(t) for t in turns if t]
        return round(sum(per_turn) / len(per_turn), 4) if per_turn else None
    if kind == PREFERENCE:
        return values.get("winner")
    return None
