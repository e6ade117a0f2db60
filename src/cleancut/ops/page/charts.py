"""Inline SVG charts for the status page: a time axis, points, lines, bars and marks.

Each chart is a self-contained `<svg>` string sized by its viewBox, so it scales with
the page and needs no script, stylesheet file or font download. Every text that
reaches the SVG (titles, tooltips) goes through `esc`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

WIDTH = 960  # a full-width chart's viewBox; half-width charts use 480
PAD_LEFT = 64
PAD_RIGHT = 16
PAD_TOP = 12
PAD_BOTTOM = 24


def esc(text: object) -> str:
    """Text for HTML and SVG content and attribute values."""
    return escape(str(text), quote=True)


@dataclass(frozen=True)
class Span:
    """The time range every chart of a page shares, so their x axes line up."""

    start: datetime
    end: datetime
    width: int = WIDTH
    left: int = PAD_LEFT  # room for the y labels (or a timeline's lane names)

    def sized(self, width: int, left: int = PAD_LEFT) -> Span:
        return Span(self.start, self.end, width, left)

    @property
    def right(self) -> int:
        return self.width - PAD_RIGHT

    def x(self, moment: datetime) -> float:
        total = (self.end - self.start).total_seconds() or 1.0
        share = (moment - self.start).total_seconds() / total
        return self.left + max(0.0, min(1.0, share)) * (self.right - self.left)


@dataclass(frozen=True)
class Mark:
    """One thing drawn at one time: a point of a series, a bar, a timeline symbol."""

    time: datetime
    value: float
    css: str  # a class of the page's stylesheet: ok, fail, miss, full, incr ...
    title: str  # the tooltip (SVG <title>), plain text


def _ticks(span: Span) -> list[datetime]:
    """Midnights (UTC) across the span, thinned to a label per ~90 units of width."""
    days = max(1, (span.end - span.start).days)
    labels = max(2, (span.right - span.left) // 90)
    step = max(1, -(-days // labels))
    first = span.start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    out = []
    moment = first
    while moment <= span.end:
        out.append(moment)
        moment += timedelta(days=step)
    return out


def _axis(span: Span, height: int) -> list[str]:
    base = height - PAD_BOTTOM
    left, right = span.left, span.right
    parts = [f'<line class="axis" x1="{left}" y1="{base}" x2="{right}" y2="{base}"/>']
    for tick in _ticks(span):
        x = span.x(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{PAD_TOP}" x2="{x:.1f}" y2="{base}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{height - 6}" text-anchor="middle">'
            f"{tick:%b %d}</text>"
        )
    return parts


def _scale_labels(span: Span, top: float, height: int, fmt: Callable[[float], str]) -> list[str]:
    base = height - PAD_BOTTOM
    mid = (base + PAD_TOP) / 2
    left, right = span.left, span.right
    label = f'<text class="tick" x="{left - 6}" y="{{y:.1f}}" text-anchor="end">{{text}}</text>'
    return [
        f'<line class="grid" x1="{left}" y1="{PAD_TOP}" x2="{right}" y2="{PAD_TOP}"/>',
        label.format(y=PAD_TOP + 4, text=esc(fmt(top))),
        label.format(y=mid + 4, text=esc(fmt(top / 2))),
        label.format(y=base, text=esc(fmt(0))),
    ]


def _svg(span: Span, label: str, height: int, parts: list[str]) -> str:
    return (
        f'<svg class="chart{" half" if span.width < WIDTH else ""}" '
        f'viewBox="0 0 {span.width} {height}" role="img" '
        f'aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{esc(label)}</title>" + "".join(parts) + "</svg>"
    )


def _y(value: float, top: float, height: int) -> float:
    base = height - PAD_BOTTOM
    return base - (value / top if top > 0 else 0.0) * (base - PAD_TOP)


def _nice_top(values: Sequence[float], binary: bool = False) -> float:
    """A round maximum for the y axis above the largest value: 1, 2 or 5 times 10^n,
    or of a power of 1024 when `binary` (byte counts: 2 MiB, not 1.9 MiB)."""
    peak = max(values, default=0.0)
    if peak <= 0:
        return 1.0
    unit = 1024.0 ** math.floor(math.log(peak, 1024)) if binary and peak >= 1 else 1.0
    scaled = peak / unit
    magnitude = 10.0 ** math.floor(math.log10(scaled))
    for factor in (1, 2, 5, 10):
        top = factor * magnitude
        if top >= scaled * (1 - 1e-9):
            if binary and top >= 1000:  # 1000 KiB reads better as 1 MiB
                top = 1024.0
            return top * unit
    return 10 * magnitude * unit


def series_chart(
    label: str,
    span: Span,
    marks: Sequence[Mark],
    fmt: Callable[[float], str],
    *,
    line: bool = True,
    height: int = 150,
) -> str:
    """Points over time (joined by a line when `line`), y from 0 to a round maximum."""
    top = _nice_top([m.value for m in marks])
    parts = _axis(span, height) + _scale_labels(span, top, height, fmt)
    coords = [(span.x(m.time), _y(m.value, top, height)) for m in marks]
    if line and len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline class="trend" points="{path}"/>')
    for (x, y), m in zip(coords, marks, strict=True):
        parts.append(
            f'<circle class="pt {esc(m.css)}" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
            f"<title>{esc(m.title)}</title></circle>"
        )
    return _svg(span, label, height, parts)


def bar_chart(
    label: str,
    span: Span,
    marks: Sequence[Mark],
    fmt: Callable[[float], str],
    height: int = 150,
    binary: bool = False,
) -> str:
    """One thin bar per mark, from 0 to its value.

    A few bars far above the rest (a first full among small incrementals) would flatten
    every other bar, so the scale follows the 90th percentile and such a bar is drawn
    cut at the top, with a notch; its tooltip keeps the exact value.
    """
    top = _bar_top([m.value for m in marks], binary)
    parts = _axis(span, height) + _scale_labels(span, top, height, fmt)
    base = height - PAD_BOTTOM
    for m in marks:
        x = span.x(m.time)
        cut = m.value > top
        y = _y(min(m.value, top), top, height)
        css = f"bar {m.css}" + (" cut" if cut else "")
        parts.append(
            f'<rect class="{esc(css)}" x="{x - 2:.1f}" y="{y:.1f}" width="4" '
            f'height="{max(0.5, base - y):.1f}"><title>{esc(m.title)}</title></rect>'
        )
        if cut:
            parts.append(
                f'<path class="notch" d="M{x - 4:.1f},{y + 5:.1f}L{x + 4:.1f},{y + 2:.1f}'
                f'L{x + 4:.1f},{y + 5:.1f}L{x - 4:.1f},{y + 8:.1f}Z"/>'
            )
    return _svg(span, label, height, parts)


def _bar_top(values: Sequence[float], binary: bool) -> float:
    ordered = sorted(values)
    if len(ordered) < 5:
        return _nice_top(ordered, binary)
    typical = ordered[int(len(ordered) * 0.9)]
    if typical > 0 and ordered[-1] > 4 * typical:
        return _nice_top([typical * 1.5], binary)
    return _nice_top(ordered, binary)


def area_chart(
    label: str,
    span: Span,
    points: Sequence[Mark],
    fmt: Callable[[float], str],
    height: int = 150,
    binary: bool = False,
) -> str:
    """A running total as a filled step line."""
    top = _nice_top([m.value for m in points], binary)
    parts = _axis(span, height) + _scale_labels(span, top, height, fmt)
    base = height - PAD_BOTTOM
    if points:
        coords: list[tuple[float, float]] = [(span.x(points[0].time), base)]
        previous: float = base
        for m in points:
            x, y = span.x(m.time), _y(m.value, top, height)
            coords += [(x, previous), (x, y)]
            previous = y
        coords += [(span.x(span.end), previous), (span.x(span.end), base)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polygon class="area" points="{path}"><title>{esc(label)}</title></polygon>')
        last = points[-1]
        x, y = span.x(last.time), _y(last.value, top, height)
        parts.append(
            f'<circle class="pt ok" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
            f"<title>{esc(last.title)}</title></circle>"
        )
    return _svg(span, label, height, parts)


LANE_HEIGHT = 22


def timeline_chart(label: str, span: Span, lanes: Sequence[tuple[str, Sequence[Mark]]]) -> str:
    """One lane per kind of event; each mark a symbol with its tooltip.

    Symbols: a tall bar for a full, a dot for an incremental, a cross for a failure,
    a triangle for a missed quiesce; the colour is the mark's class.
    """
    height = PAD_TOP + LANE_HEIGHT * len(lanes) + PAD_BOTTOM
    parts = _axis(span, height)
    for i, (name, marks) in enumerate(lanes):
        mid = PAD_TOP + LANE_HEIGHT * i + LANE_HEIGHT / 2
        parts.append(
            f'<text class="lane" x="{span.left - 8}" y="{mid + 4:.1f}" text-anchor="end">'
            f"{esc(name)}</text>"
        )
        parts.append(
            f'<line class="lane-line" x1="{span.left}" y1="{mid:.1f}" x2="{span.right}" '
            f'y2="{mid:.1f}"/>'
        )
        parts.extend(_symbol(span.x(m.time), mid, m) for m in marks)
    return _svg(span, label, height, parts)


def _symbol(x: float, mid: float, m: Mark) -> str:
    tip = f"<title>{esc(m.title)}</title>"
    css = esc(m.css)
    if "fail" in m.css.split():
        d = 4.5
        return (
            f'<path class="sym {css}" d="M{x - d:.1f},{mid - d:.1f}L{x + d:.1f},{mid + d:.1f}'
            f'M{x - d:.1f},{mid + d:.1f}L{x + d:.1f},{mid - d:.1f}">{tip}</path>'
        )
    if "miss" in m.css.split():
        return (
            f'<path class="sym {css}" d="M{x:.1f},{mid - 6:.1f}L{x + 5.5:.1f},{mid + 4.5:.1f}'
            f'L{x - 5.5:.1f},{mid + 4.5:.1f}Z">{tip}</path>'
        )
    if "full" in m.css.split():
        return (
            f'<rect class="sym {css}" x="{x - 2:.1f}" y="{mid - 8:.1f}" width="4" '
            f'height="16" rx="1">{tip}</rect>'
        )
    return f'<circle class="sym {css}" cx="{x:.1f}" cy="{mid:.1f}" r="3">{tip}</circle>'
