"""Dense histories drawn at the page's resolution: marks grouped into time buckets.

A source backed up every five minutes has 8640 attempts in 30 days. One SVG element
each would make a page of megabytes that no screen can tell apart (a chart is about
a thousand pixels wide). So above LIMIT marks a chart gets one mark per bucket
(BUCKETS across the span) that holds more than one: its tooltip gives the count and
the time range, and it keeps what an operator must not miss: it sits at the time
of the group's worst mark (the longest pause, the worst consistency label) with
that mark's colour, and its value is the group's reduction (the longest pause, the
sum of bytes added, the running total reached).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .charts import Mark, Span

LIMIT = 300  # marks a chart draws one by one
BUCKETS = 240  # groups across the span above that: about 4 px each on a wide chart


def thin(
    marks: Sequence[Mark],
    span: Span,
    noun: str,
    reduce: Callable[[Sequence[float]], float] = max,
    describe: Callable[[float], str] | None = None,
    worst: Callable[[Mark], float] | None = None,
) -> list[Mark]:
    """`marks` (oldest first) as drawn: themselves up to LIMIT, else one per bucket.

    noun: what a mark is, for the count ("incremental backups"); describe: the
    reduced value as text for the tooltip; worst: which mark of a group shows
    (its time and colour), by default the one with the largest value.
    """
    if len(marks) <= LIMIT:
        return list(marks)
    total = (span.end - span.start).total_seconds() or 1.0
    groups: dict[int, list[Mark]] = {}
    for m in marks:
        share = (m.time - span.start).total_seconds() / total
        groups.setdefault(min(BUCKETS - 1, max(0, int(share * BUCKETS))), []).append(m)
    out = []
    for _, group in sorted(groups.items()):
        if len(group) == 1:
            out.append(group[0])
            continue
        shown = max(group, key=worst or (lambda m: m.value))
        value = reduce([m.value for m in group])
        title = (
            f"{len(group)} {noun}, {group[0].time:%Y-%m-%d %H:%M} to "
            f"{group[-1].time:%Y-%m-%d %H:%M} UTC" + (f": {describe(value)}" if describe else "")
        )
        out.append(Mark(shown.time, value, shown.css, title))
    return out
