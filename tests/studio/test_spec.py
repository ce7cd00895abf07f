"""Recipe conditions: validation, canonical form, diffs and slider-step detection (no database)."""
from __future__ import annotations

import pytest

from curation.studio.spec import Bound, SpecError, diff_specs, parse_spec, single_bound_move


def test_canonical_form_ignores_order_and_duplicates_in_flags():
    a = parse_spec({"bounds": [{"scorer": "deita", "min": "3"}, {"scorer": "confilter", "min": 0.8, "max": 1.1}],
                    "flags": ["rules", "minhash", "rules"]})
    b = parse_spec({"bounds": [{"scorer": "confilter", "min": 0.8, "max": 1.1}, {"scorer": "deita", "min": 3}],
                    "flags": ["minhash", "rules"]})
    assert a == b and a.key() == b.key()
    assert [x.scorer for x in a.bounds] == ["confilter", "deita"]
    assert a.bound("deita").min == 3.0


@pytest.mark.parametrize(
    "data, message",
    [
        ({"bounds": [{"scorer": "x", "min": "abc"}]}, "not a number"),
        ({"bounds": [{"scorer": "x", "min": 2, "max": 1}]}, "above maximum"),
        ({"bounds": [{"min": 2}]}, "needs a scorer"),
        ({"bounds": [{"scorer": "x", "min": 1}, {"scorer": "x", "max": 2}]}, "two bounds"),
        ({"bounds": [{"scorer": "x", "min": "nan"}]}, "finite"),
        ({"bounds": "x"}, "must be a list"),
        ({"flags": "rules"}, "list"),
    ],
)
def test_bad_conditions_are_clear_errors(data, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


def test_diff_lists_added_removed_changed_and_flags():
    old = parse_spec({"bounds": [{"scorer": "deita", "min": 3}, {"scorer": "rater", "min": 2}], "flags": ["rules"]})
    new = parse_spec({"bounds": [{"scorer": "deita", "min": 4}, {"scorer": "confilter", "min": 0.5, "max": 1}],
                      "flags": ["minhash"]})
    d = diff_specs(old, new)
    assert [b.scorer for b in d.added] == ["confilter"]
    assert [b.scorer for b in d.removed] == ["rater"]
    assert d.changed == [(Bound("deita", 3.0), Bound("deita", 4.0))]
    assert d.flags_added == ["minhash"] and d.flags_removed == ["rules"]
    assert "~ deita >= 3  ->  deita >= 4" in d.lines()
    assert diff_specs(new, new).empty


def test_single_bound_move_is_recognised_only_for_one_side_of_one_bound():
    base = parse_spec({"bounds": [{"scorer": "a", "min": 1, "max": 5}, {"scorer": "b", "min": 0}]})
    moved = parse_spec({"bounds": [{"scorer": "a", "min": 2, "max": 5}, {"scorer": "b", "min": 0}]})
    move = single_bound_move(base, moved)
    assert move is not None and (move.scorer, move.side, move.old, move.new) == ("a", "min", 1.0, 2.0)
    both = parse_spec({"bounds": [{"scorer": "a", "min": 2, "max": 4}, {"scorer": "b", "min": 0}]})
    assert single_bound_move(base, both) is None
    two = parse_spec({"bounds": [{"scorer": "a", "min": 2, "max": 5}, {"scorer": "b", "min": 1}]})
    assert single_bound_move(base, two) is None
    flag = parse_spec({"bounds": [{"scorer": "a", "min": 1, "max": 5}, {"scorer": "b", "min": 0}], "flags": ["r"]})
    assert single_bound_move(base, flag) is None
