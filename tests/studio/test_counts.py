"""Kept-counts from the score matrix equal a direct recomputation from the Score rows."""
from __future__ import annotations

import random

import pytest

from medstudio.handoffs.models import Score, ScorerRun
from curation.studio.selectors import kept_counts, kept_q, scope_load
from curation.studio.spec import parse_spec
from medstudio.datasets.models import Record

pytestmark = pytest.mark.django_db


def direct(datasets, data: dict) -> dict[tuple[str, str], list[int]]:
    """Recompute per (lang, source) kept records and tokens by walking Score rows in Python."""
    spec = parse_spec(data)
    out: dict[tuple[str, str], list[int]] = {}
    for ds in datasets:
        latest = {}
        for run in ScorerRun.objects.filter(dataset=ds).order_by("-id"):  # all test runs finish
            latest.setdefault(run.scorer, run)
        values = {name: dict(Score.objects.filter(run=run).values_list("record_id", "value")) for name, run in latest.items()}
        keeps = {name: dict(Score.objects.filter(run=run).values_list("record_id", "keep")) for name, run in latest.items()}
        for rec in Record.objects.filter(dataset=ds):
            ok = True
            for b in spec.bounds:
                v = values.get(b.scorer, {}).get(rec.pk)
                if v is None:
                    ok = ok and b.keep_unscored
                    continue
                if b.min is not None and v < b.min:
                    ok = False
                if b.max is not None and v > b.max:
                    ok = False
            for f in spec.flags:
                if keeps.get(f, {}).get(rec.pk) is False:
                    ok = False
            if ok:
                row = out.setdefault((rec.lang, rec.source), [0, 0])
                row[0] += 1
                row[1] += rec.n_tokens
    return out


def as_kept(counts) -> dict[tuple[str, str], list[int]]:
    return {k: [g["kept"], g["kept_tokens"]] for k, g in counts.groups.items() if g["kept"]}


SPECS = [
    {},
    {"bounds": [{"scorer": "t_rater", "min": 2.5}]},
    {"bounds": [{"scorer": "t_rater", "min": 2.5}, {"scorer": "t_deita", "max": 20}], "flags": ["t_rules"]},
    {"bounds": [{"scorer": "t_cf", "min": 0.8, "max": 1.1}, {"scorer": "t_deita", "min": 5}], "flags": ["t_rules", "t_dedup"]},
    {"bounds": [{"scorer": "t_cf", "min": 0.8, "max": 1.1, "keep_unscored": True}]},
    {"bounds": [{"scorer": "t_rater"}]},  # "must be scored"
    {"bounds": [{"scorer": "not_run_here", "min": 1}]},
    {"bounds": [{"scorer": "not_run_here", "min": 1, "keep_unscored": True}], "flags": ["t_dedup"]},
]


@pytest.mark.parametrize("data", SPECS)
def test_full_counts_equal_direct_recomputation(scored, data):
    qa, docs = scored
    scope = scope_load([qa.pk, docs.pk])
    got = kept_counts(scope, parse_spec(data), allow_delta=False)
    assert got.mode == "full"
    assert as_kept(got) == direct([qa, docs], data)
    total = got.total
    assert total["records"] == Record.objects.filter(dataset__in=[qa, docs]).count()
    assert total["kept"] + total["dropped"] == total["records"]
    assert sum(v["kept"] for v in got.by_lang.values()) == total["kept"]
    assert sum(v["kept_tokens"] for v in got.by_source.values()) == total["kept_tokens"]


def test_counts_are_not_trivial(scored):
    """The fixture's scores must actually split the data, or the equality test proves nothing."""
    qa, docs = scored
    scope = scope_load([qa.pk, docs.pk])
    got = kept_counts(scope, parse_spec(SPECS[3]), allow_delta=False).total
    assert 0 < got["kept"] < got["records"] / 2
    assert {"zh", "en"} <= set(kept_counts(scope, parse_spec({}), allow_delta=False).by_lang)


def test_slider_steps_use_the_delta_path_and_stay_exact(scored):
    qa, docs = scored
    scope = scope_load([qa.pk, docs.pk])
    rng = random.Random(7)
    data = {"bounds": [{"scorer": "t_rater", "min": 2.0}, {"scorer": "t_deita", "min": 3, "max": 30},
                       {"scorer": "t_cf", "min": 0.5, "max": 1.3}], "flags": ["t_rules"]}
    base = kept_counts(scope, parse_spec(data))
    modes = set()
    for _ in range(25):
        b = rng.choice(data["bounds"])
        side = rng.choice(["min", "max"]) if b["scorer"] != "t_rater" else "min"
        lo, hi = {"t_rater": (0, 5), "t_deita": (1, 36), "t_cf": (0.3, 1.6)}[b["scorer"]]
        step = (hi - lo) * rng.uniform(-0.05, 0.05)
        b[side] = round(b[side] + step, 3)
        if b.get("min") is not None and b.get("max") is not None and b["min"] > b["max"]:
            b["min"], b["max"] = b["max"], b["min"]
        got = kept_counts(scope, parse_spec(data), base_key=base.spec_key)
        modes.add(got.mode)
        assert as_kept(got) == direct([qa, docs], data), (got.mode, data)
        base = got
    assert "delta" in modes


def test_opening_and_closing_a_bound_side_by_delta(scored):
    qa, docs = scored
    scope = scope_load([qa.pk])
    a = {"bounds": [{"scorer": "t_rater", "max": 4.9}]}
    b = {"bounds": [{"scorer": "t_rater", "min": 0.1, "max": 4.9}]}
    c = {"bounds": [{"scorer": "t_rater", "min": 0.1}]}
    base = kept_counts(scope, parse_spec(a))
    got_b = kept_counts(scope, parse_spec(b), base_key=base.spec_key)
    assert got_b.mode == "delta" and as_kept(got_b) == direct([qa], b)
    got_c = kept_counts(scope, parse_spec(c), base_key=got_b.spec_key)
    assert got_c.mode == "delta" and as_kept(got_c) == direct([qa], c)


def test_a_new_scorer_run_replaces_the_old_column(scored, curator):
    from curation.scoring import scorer_run_start
    from curation.studio.services import matrix_is_current, matrix_sync

    qa, _ = scored
    data = {"bounds": [{"scorer": "t_rater", "min": 2.5}]}
    before = as_kept(kept_counts(scope_load([qa.pk]), parse_spec(data), allow_delta=False))
    scorer_run_start(user=curator, dataset=qa, scorer="t_rater", params={"version": "2"})
    # A finished scorer run starts a matrix sync job (run inline here), so the matrix is current.
    assert matrix_is_current(dataset=qa)
    assert not matrix_sync(dataset=qa, actor=curator)["rebuilt"]
    scope = scope_load([qa.pk])
    assert scope.value["t_rater"].runs[qa.pk]["run"] == ScorerRun.objects.filter(scorer="t_rater", dataset=qa).order_by("-id").first().pk
    after = as_kept(kept_counts(scope, parse_spec(data), allow_delta=False))
    assert after == direct([qa], data) == before  # same deterministic scorer: same answer through the new column
    # a filter re-run moves to a new bit; the old bit is cleared, so counts stay exact
    flagged = {"bounds": [{"scorer": "t_rater", "min": 2.5}], "flags": ["t_rules", "t_dedup"]}
    scorer_run_start(user=curator, dataset=qa, scorer="t_rules")
    matrix_sync(dataset=qa, actor=curator)
    scope = scope_load([qa.pk])
    assert scope.flag["t_rules"].runs[qa.pk]["run"] == ScorerRun.objects.filter(scorer="t_rules", dataset=qa).order_by("-id").first().pk
    assert as_kept(kept_counts(scope, parse_spec(flagged), allow_delta=False)) == direct([qa], flagged)


def test_filters_get_bits_and_informative_values_get_columns(scored):
    qa, _ = scored
    scope = scope_load([qa.pk])
    assert set(scope.flag) == {"t_rules", "t_dedup"}
    assert {"t_rater", "t_deita", "t_cf", "t_rules"} <= set(scope.value)  # rules values are lengths
    assert "t_dedup" not in scope.value  # its values are only the 0/1 verdict
    q = kept_q(scope, parse_spec({"flags": ["t_rules"]}))
    assert "&" in str(q) or "drop_mask" in str(q)
