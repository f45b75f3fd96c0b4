"""Which cells of a table may not be published, apart from I/O.

Primary suppression: a cell counting fewer than ``k`` distinct cases (at least one) is hidden.
Complementary suppression: a hidden cell must not be derivable by subtracting the published
cells of a line from that line's total (the total of a row, of a column, or of the whole
table, which other tables, a filter or a later period may publish). So in every line — the
cells that share all keys but one, and the whole table — a hidden cell is never alone: when
exactly one is hidden, the next smallest published cell of that line (fewest cases, then
by key) is hidden too, and so on until every line has none or at least two. Hiding only
grows, so this ends, and it is deterministic (the same counts hide the same cells).

What this does not do: solve linear systems across several lines and tables (an attacker
combining many published margins may narrow a hidden cell to a range); k and coarse areas by
default keep that residual risk small. docs/evidence.md says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

Key = tuple[str, ...]


def primary(counts: Mapping[Key, int], k: int) -> set[Key]:
    """The cells with fewer than ``k`` cases."""
    return {key for key, cases in counts.items() if cases < k}


def lines(keys: list[Key], *, whole_table: bool = True) -> list[list[Key]]:
    """The groups a total is taken over: for each key position, the cells equal in every
    other position; and the whole table (unless its cells overlap, so that their sum is no
    total: a case counted under its sex and under its age band). Lines of one cell give
    nothing away: left out."""
    out: list[list[Key]] = []
    if whole_table and len(keys) > 1:
        out.append(sorted(keys))
    width = len(keys[0]) if keys else 0
    if width > 1:
        for position in range(width):
            groups: dict[Key, list[Key]] = defaultdict(list)
            for key in keys:
                groups[key[:position] + key[position + 1 :]].append(key)
            out.extend(sorted(g) for g in groups.values() if len(g) > 1)
    return out


def suppressed(counts: Mapping[Key, int], k: int, *, whole_table: bool = True) -> set[Key]:
    """Every cell to hide: the primary ones and their complements."""
    hidden = primary(counts, k)
    if not hidden:
        return hidden
    groups = lines(list(counts), whole_table=whole_table)
    changed = True
    while changed:
        changed = False
        for line in groups:
            inside = [key for key in line if key in hidden]
            if len(inside) != 1:
                continue
            published = [key for key in line if key not in hidden]
            if not published:
                continue
            hidden.add(min(published, key=lambda key: (counts[key], key)))
            changed = True
    return hidden
