"""services/evidence/suppression.py: no cell of fewer than k cases is published, and none can be
derived by subtraction from the published cells of a line (row, column, whole table)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.evidence.suppression import Key, lines, primary, suppressed

K = 5


def test_cells_under_k_are_hidden_and_the_others_kept_when_nothing_else_is_needed() -> None:
    counts = {("SN", "no_listing"): 3, ("SN", "no_capacity"): 2, ("SN", "consent_scope"): 9}
    # two hidden in the one line: neither can be derived from the total minus the other
    assert suppressed(counts, K) == {("SN", "no_listing"), ("SN", "no_capacity")}


def test_nothing_is_hidden_when_every_cell_counts_k_cases() -> None:
    assert suppressed({("a",): 5, ("b",): 40}, K) == set()


def test_a_lone_hidden_cell_takes_the_next_smallest_of_its_line_with_it() -> None:
    counts = {("psy",): 25, ("eco",): 15, ("none",): 3, ("legal",): 7}
    # the total of the table (the sum over pathways) minus the published ones would give
    # "none": the smallest other (legal, 7) goes too, the large ones stay
    assert suppressed(counts, K) == {("none",), ("legal",)}


def test_ties_are_broken_by_key_so_the_result_is_deterministic() -> None:
    counts = {("a",): 2, ("c",): 8, ("b",): 8}
    assert suppressed(counts, K) == {("a",), ("b",)}


def test_complements_propagate_through_rows_and_columns() -> None:
    # rows: areas; columns: reasons. (SN01, x) is under k; its row and column each need a
    # second hidden cell, and those in turn make their own lines need one.
    counts = {
        ("SN01", "x"): 1,
        ("SN01", "y"): 10,
        ("SN02", "x"): 20,
        ("SN02", "y"): 30,
    }
    hidden = suppressed(counts, K)
    assert hidden == set(counts), "in a 2 by 2 table one small cell hides all four"


def test_a_table_of_one_cell_under_k_hides_it_and_nothing_else() -> None:
    assert suppressed({("SN", "w"): 2}, K) == {("SN", "w")}


def test_lines_are_the_rows_columns_and_the_whole_table() -> None:
    keys: list[Key] = [("a", "x"), ("a", "y"), ("b", "x")]
    assert sorted(map(sorted, lines(keys))) == sorted(
        [sorted(keys), [("a", "x"), ("b", "x")], [("a", "x"), ("a", "y")]]
    )
    assert lines([("a",)]) == []
    # overlapping breakdowns (by_group): only the lines within a breakdown
    assert lines([("sex", "f"), ("sex", "m"), ("age", "18-24")], whole_table=False) == [
        [("sex", "f"), ("sex", "m")]
    ]


tables = st.dictionaries(
    st.tuples(st.sampled_from("abcd"), st.sampled_from("wxyz")),
    st.integers(min_value=1, max_value=30),
    min_size=1,
    max_size=16,
)


@settings(max_examples=300, deadline=None)
@given(tables, st.integers(min_value=2, max_value=10))
def test_no_published_cell_is_small_and_no_line_hides_exactly_one(
    counts: dict[Key, int], k: int
) -> None:
    hidden = suppressed(counts, k)
    assert primary(counts, k) <= hidden <= set(counts)
    for key in set(counts) - hidden:
        assert counts[key] >= k
    for line in lines(list(counts)):
        assert sum(key in hidden for key in line) != 1, line


@settings(max_examples=200, deadline=None)
@given(tables, st.integers(min_value=2, max_value=10))
def test_the_result_depends_on_the_counts_only(counts: dict[Key, int], k: int) -> None:
    reordered = dict(reversed(list(counts.items())))
    assert suppressed(counts, k) == suppressed(reordered, k)
