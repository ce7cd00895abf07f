"""Typed settings of curation's part-1 scorers (rules, pii, minhash, decontam), for the "Run scorer"
form: each names its default from the plain-Python config of the block (curation/pipeline), so
the form and the block can never disagree, plus a range the block accepts. curation/handlers.py
passes them to `register_scorer(params=...)`.
"""
from __future__ import annotations

from dataclasses import fields, replace

from django.utils.translation import gettext_lazy as _

from curation.pipeline import pii as pii_mod
from curation.pipeline.decontam import DecontamConfig
from curation.pipeline.minhash import KEEP_POLICIES, MinHashConfig
from curation.pipeline.rules import RuleConfig, RuleFilter
from medstudio.handoffs.scorers import Param


def _default(cfg, name):
    return {f.name: f for f in fields(cfg)}[name].default


def _labelled(params: tuple[Param, ...], labels: dict) -> tuple[Param, ...]:
    """The params with their form labels (lazy translations, so each reader sees their language)."""
    return tuple(replace(p, label=labels[p.name]) if p.name in labels else p for p in params)


RULE_PARAMS = (
    Param("min_tokens", "int", _default(RuleConfig, "min_tokens"), min=0, max=100_000, step=1,
          help=_("Documents with fewer tokens are dropped (Gopher: 50).")),
    Param("max_tokens", "int", _default(RuleConfig, "max_tokens"), min=1, max=10_000_000, step=1,
          help=_("Documents with more tokens are dropped (Gopher: 100,000).")),
    Param("min_tokens_sft", "int", _default(RuleConfig, "min_tokens_sft"), min=0, max=10_000, step=1,
          help=_("The floor for QA, dialogue, MCQ and pair records.")),
    Param("max_special_char_ratio", "float", _default(RuleConfig, "max_special_char_ratio"), min=0, max=1, step=0.01,
          help=_("Share of characters that are neither letters, digits nor punctuation.")),
    Param("max_dup_line_ratio", "float", _default(RuleConfig, "max_dup_line_ratio"), min=0, max=1, step=0.01,
          help=_("Share of duplicated lines (Gopher: 0.3).")),
    Param("max_toxic_hits", "int", _default(RuleConfig, "max_toxic_hits"), min=0, max=1000, step=1,
          help=_("Block-listed words allowed (C4: 0).")),
    Param("max_pii_hits", "int", _default(RuleConfig, "max_pii_hits"), min=0, max=1000, step=1,
          help=_("Personal-information spans allowed.")),
    Param("disabled", "multi", [], choices=tuple(RuleFilter.RULE_ORDER), help=_("Rules to skip.")),
)

PII_PARAMS = (
    Param("types", "multi", list(pii_mod.PII_TYPES), choices=tuple(pii_mod.PII_TYPES), help=_("Kinds of spans to find.")),
    Param("max_hits", "int", 0, min=0, max=1000, step=1, help=_("Records with more spans are dropped.")),
    Param("phone_region", "choice", "CN", choices=("CN", "US", "GB", "HK", "TW", "SG"),
          help=_("Region for phone numbers without a country code.")),
)

MINHASH_PARAMS = (
    Param("threshold", "float", _default(MinHashConfig, "threshold"), min=0.01, max=1, step=0.01,
          help=_("Jaccard similarity above which two records are near-duplicates.")),
    Param("num_perm", "int", _default(MinHashConfig, "num_perm"), min=8, max=1024, step=8,
          help=_("Permutations; a multiple of bands.")),
    Param("bands", "int", _default(MinHashConfig, "bands"), min=1, max=512, step=1),
    Param("ngram_zh", "int", _default(MinHashConfig, "ngram_zh"), min=1, max=50, step=1, help=_("Characters (Chinese text).")),
    Param("ngram_en", "int", _default(MinHashConfig, "ngram_en"), min=1, max=50, step=1, help=_("Words (other text).")),
    Param("policy", "choice", "first", choices=KEEP_POLICIES, help=_("Which record of a cluster is kept.")),
    Param("keep_scorer_run", "scorer_run", None, help=_("Policy score: the run whose values decide.")),
    Param("datasets", "datasets", [], help=_("More datasets to deduplicate against.")),
    Param("per_source", "bool", False, help=_("Deduplicate within each source only.")),
)

DECONTAM_PARAMS = (
    Param("benchmarks", "datasets", [], benchmarks_only=True,
          help=_("Benchmarks to check against (none chosen: every flagged benchmark).")),
    Param("ngram_en", "int", _default(DecontamConfig, "ngram_en"), min=1, max=100, step=1, help=_("Words (GPT-3: 13).")),
    Param("ngram_zh", "int", _default(DecontamConfig, "ngram_zh"), min=1, max=200, step=1, help=_("Characters.")),
    Param("min_item_tokens", "int", _default(DecontamConfig, "min_item_tokens"), min=1, max=1000, step=1,
          help=_("Shorter benchmark parts are not indexed.")),
    Param("max_hits", "int", _default(DecontamConfig, "max_hits"), min=0, max=1000, step=1,
          help=_("Records matching more benchmark items are dropped.")),
)

RULE_PARAMS = _labelled(RULE_PARAMS, {
    "min_tokens": _("Minimum tokens"), "max_tokens": _("Maximum tokens"),
    "min_tokens_sft": _("Minimum tokens (SFT records)"), "max_special_char_ratio": _("Largest share of symbols"),
    "max_dup_line_ratio": _("Largest share of repeated lines"), "max_toxic_hits": _("Block-listed words allowed"),
    "max_pii_hits": _("Personal-information spans allowed"), "disabled": _("Rules to skip")})
PII_PARAMS = _labelled(PII_PARAMS, {"types": _("Kinds of personal information"), "max_hits": _("Spans allowed"),
                                    "phone_region": _("Phone region")})
MINHASH_PARAMS = _labelled(MINHASH_PARAMS, {
    "threshold": _("Similarity threshold"), "num_perm": _("Permutations"), "bands": _("Bands"),
    "ngram_zh": _("Chinese n-gram (characters)"), "ngram_en": _("Other n-gram (words)"), "policy": _("Record to keep"),
    "keep_scorer_run": _("Scorer run for the score policy"), "datasets": _("Other datasets"),
    "per_source": _("Deduplicate per source")})
DECONTAM_PARAMS = _labelled(DECONTAM_PARAMS, {
    "benchmarks": _("Benchmarks"), "ngram_en": _("English n-gram (words)"), "ngram_zh": _("Chinese n-gram (characters)"),
    "min_item_tokens": _("Shortest benchmark part (tokens)"), "max_hits": _("Matches allowed")})
