"""The status page as one HTML document, rendered on the server.

Its facts come from two places only: the StatusOutcome that `cleancut status --json`
prints (each source's state, reasons and figures; ops/status.py) and the History of
the same records (ops/history.py) for the charts. The document carries its own
stylesheet and SVG; the only script is optional (a reload every minute and local
times), so everything essential reads the same with JavaScript off. All user text
(source names, reasons, errors) is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cleancut import clock
from cleancut.settings.units import DAY

from ..health import SEVERITY, SourceHealth
from ..health_text import duration_text, restore_test_text, success_rate_text
from ..history import BackupEntry, History, RestoreTestEntry, SourceHistory
from ..status import StatusOutcome
from .charts import Mark, Span, area_chart, bar_chart, esc, series_chart, timeline_chart
from .style import SCRIPT, STYLE
from .thin import thin

WINDOW = 30 * DAY  # the charts show the last 30 days, like status's longest rate window
RECENT = 10  # backups listed under each source's charts
SMALL_HEIGHT = 190
HALF = 480  # the viewBox width of the small charts, three to a row on a wide screen
HALF_LABELS = 84  # room for the small charts' y labels (their text is larger)
LANE_LABELS = 104  # room for the timeline's lane names


def render_page(outcome: StatusOutcome, hist: History, title: str = "cleancut status") -> str:
    """The whole page for one repository at `outcome.time`."""
    now = outcome.time
    span = Span(_start(hist, now), now)
    worst_first = sorted(outcome.sources, key=lambda h: (-SEVERITY[h.state], h.name))
    body = [
        _header(outcome, title),
        _overview(worst_first),
        *(
            _source_section(h, hist.sources.get(h.name, SourceHistory(h.name)), span)
            for h in worst_first
        ),
        _growth_section(hist, span),
        _footer(),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}: {esc(outcome.state)}</title>"
        '<link rel="icon" href="data:,">'
        f"<style>{STYLE}</style></head>"
        f'<body class="state-{esc(outcome.state)}">' + "".join(body) + f"<script>{SCRIPT}</script>"
        "</body></html>\n"
    )


def _start(hist: History, now: datetime) -> datetime:
    """The charts' left edge: the first event, at most WINDOW back, at least a day back."""
    times = [b.time for s in hist.sources.values() for b in s.backups]
    times += [t.time for s in hist.sources.values() for t in s.restore_tests]
    earliest = min(times, default=now)
    return min(max(earliest, now - timedelta(seconds=WINDOW)), now - timedelta(days=1))


def _time(moment: datetime | str) -> str:
    """A UTC time in a <time> element (the optional script shows it in local time)."""
    text = moment if isinstance(moment, str) else clock.iso(moment)
    shown = clock.from_iso(text).strftime("%Y-%m-%d %H:%M UTC")
    return f'<time datetime="{esc(text)}">{esc(shown)}</time>'


def _badge(state: str) -> str:
    return f'<span class="badge {esc(state)}">{esc(state)}</span>'


def _header(outcome: StatusOutcome, title: str) -> str:
    states = [h.state for h in outcome.sources]
    counts = {s: states.count(s) for s in ("ok", "warn", "critical")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no sources yet"
    return (
        f'<header><h1>{esc(title)}</h1><div class="overall">{_badge(outcome.state)}'
        f'<span class="summary">{esc(summary)}</span>'
        f'<span class="asof">as of {_time(outcome.time)}</span></div></header>'
    )


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{clock.age_text(seconds)} ago"


def _rate(h: SourceHealth, window: str) -> str:
    return success_rate_text(h, window, none="no attempts")


def _overview(sources: Sequence[SourceHealth]) -> str:
    if not sources:
        return (
            '<section class="empty"><p>No backups yet: the repository holds no snapshot and '
            "no backup attempt.</p></section>"
        )
    rows = []
    for h in sources:
        reasons = "".join(
            f'<li class="{esc(f.state)}">{_badge(f.state)} {esc(f.reason)}</li>' for f in h.findings
        )
        rows.append(
            f'<tr class="source" id="row-{_anchor(h.name)}">'
            f'<td class="name"><a href="#source-{_anchor(h.name)}">{esc(h.name)}</a></td>'
            f"<td>{_badge(h.state)}</td>"
            f"<td>{esc(_age(h.last_full_age_s))}</td>"
            f"<td>{esc(_age(h.last_incremental_age_s))}</td>"
            f"<td>{esc(_chain(h))}</td>"
            f"<td>{esc(restore_test_text(h))}</td>"
            f"<td>{esc(_rate(h, '7d'))}</td>"
            f"<td>{h.consecutive_quiesce_misses}</td>"
            f'<td class="reasons">{f"<ul>{reasons}</ul>" if reasons else "all well"}</td></tr>'
        )
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "source",
            "state",
            "last full",
            "last incremental",
            "chain",
            "restore test",
            "ok 7d",
            "misses",
            "reasons",
        )
    )
    return (
        '<section class="overview"><h2>Sources</h2>'
        f'<table class="sources"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table></section>"
    )


def _chain(h: SourceHealth) -> str:
    if h.chain_age_s is None:
        return "-"
    return f"{h.chain_length} long, started {clock.age_text(h.chain_age_s)} ago"


def _anchor(name: str) -> str:
    """A fragment id for a source: its name's characters that need no escaping, plus its hex."""
    return "".join(c if c.isalnum() else "-" for c in name)[:40] + "-" + name.encode().hex()[:16]


def _source_section(h: SourceHealth, hist: SourceHistory, span: Span) -> str:
    inside = [b for b in hist.backups if b.time >= span.start]
    tests = [t for t in hist.restore_tests if t.time >= span.start]
    half = span.sized(HALF, HALF_LABELS)
    small = [
        _pause_figure(inside, half),
        _figure(
            "Bytes added per backup",
            bar_chart(
                f"{h.name}: bytes added per backup",
                half,
                thin(
                    [
                        Mark(b.time, float(b.bytes_added), b.kind or "incr", _backup_title(b))
                        for b in inside
                        if b.bytes_added is not None
                    ],
                    half,
                    "backups",
                    reduce=sum,
                    describe=lambda v: f"{_bytes(v)} added",
                ),
                _bytes,
                height=SMALL_HEIGHT,
                binary=True,
            ),
        ),
        _rto_figure(h.name, tests, half),
    ]
    timeline = _timeline(h.name, inside, span.sized(span.width, LANE_LABELS))
    return (
        f'<section class="source-detail" id="source-{_anchor(h.name)}">'
        f"<h2>{esc(h.name)} {_badge(h.state)}</h2>"
        f'<p class="facts">{_facts(h, inside)}</p>'
        + _figure("Backups", timeline, _LEGEND)
        + f'<div class="small">{"".join(small)}</div>'
        + _recent(hist.backups, open_=h.state != "ok")
        + "</section>"
    )


def _facts(h: SourceHealth, inside: Sequence[BackupEntry]) -> str:
    fulls = sum(1 for b in inside if b.ok and b.kind == "full")
    incs = sum(1 for b in inside if b.ok and b.kind != "full")
    failed = sum(1 for b in inside if not b.ok)
    missed = sum(1 for b in inside if b.quiesce_missed)
    parts = [
        f"{fulls} full",
        f"{incs} incremental",
        f"{failed} failed",
        f"{missed} missed quiesce",
        f"success 7d {_rate(h, '7d')}, 30d {_rate(h, '30d')}",
        f"{h.snapshots} snapshot(s) kept",
    ]
    return esc(" · ".join(parts))


_LEGEND = (
    '<p class="legend"><span class="key full"></span>full '
    '<span class="key incr"></span>incremental '
    '<span class="key fail">&#215;</span>failed '
    '<span class="key miss"></span>quiesce missed · colour: '
    '<span class="swatch quiesced"></span>quiesced '
    '<span class="swatch frozen"></span>hooked / frozen '
    '<span class="swatch journal"></span>journal '
    '<span class="swatch unquiesced"></span>unquiesced</p>'
)


def _figure(caption: str, svg: str, extra: str = "") -> str:
    return f"<figure><figcaption>{esc(caption)}</figcaption>{svg}{extra}</figure>"


def _consistency_css(label: str | None) -> str:
    return {"hooked": "frozen"}.get(label or "", label or "unquiesced")


# How far a label is from a quiesced cut: a group of marks shows its worst.
_LABEL_RANK = {"quiesced": 0, "frozen": 1, "journal": 2, "unquiesced": 3}


def _label_rank(m: Mark) -> float:
    return max((_LABEL_RANK.get(token, 0) for token in m.css.split()), default=0)


def _timeline(name: str, backups: Sequence[BackupEntry], span: Span) -> str:
    def mark(b: BackupEntry, css: str) -> Mark:
        return Mark(b.time, 0.0, f"{css} {_consistency_css(b.consistency)}", _backup_title(b))

    lanes = [
        ("full", "full backups", [mark(b, "full") for b in backups if b.ok and b.kind == "full"]),
        (
            "incremental",
            "incremental backups",
            [mark(b, "incr") for b in backups if b.ok and b.kind != "full"],
        ),
        ("failed", "failed attempts", [mark(b, "fail") for b in backups if not b.ok]),
        (
            "quiesce missed",
            "missed quiesce windows",
            [mark(b, "miss") for b in backups if b.quiesce_missed],
        ),
    ]
    drawn = [
        (lane, thin(marks, span, noun, reduce=lambda _: 0.0, worst=_label_rank))
        for lane, noun, marks in lanes
    ]
    return timeline_chart(f"{name}: backups over time", span, drawn)


def _pause_figure(backups: Sequence[BackupEntry], span: Span) -> str:
    marks = [
        Mark(b.time, b.pause_ms, "ok", f"{b.time:%Y-%m-%d %H:%M} UTC: pause {b.pause_ms:.1f} ms")
        for b in backups
        if b.pause_ms is not None
    ]
    if not marks:
        return _figure(
            "Agent pause",
            '<p class="none">No hot backup recorded a pause in this window (cold backups '
            "do not pause the agent).</p>",
        )
    worst = max(m.value for m in marks)
    drawn = thin(marks, span, "hot backups", describe=lambda v: f"longest pause {v:.1f} ms")
    return _figure(
        f"Agent pause per hot backup (max {worst:.1f} ms)",
        series_chart("agent pause in ms", span, drawn, lambda v: f"{v:g} ms", height=SMALL_HEIGHT),
    )


def _rto_figure(name: str, tests: Sequence[RestoreTestEntry], span: Span) -> str:
    if not tests:
        return _figure("Restore tests", '<p class="none">No restore test in this window.</p>')
    marks = [
        Mark(
            t.time,
            t.rto_s or 0.0,
            "ok" if t.passed else "fail",
            f"{t.time:%Y-%m-%d %H:%M} UTC: {'passed' if t.passed else 'FAILED'}"
            + (f", RTO {_seconds(t.rto_s)}" if t.rto_s is not None else "")
            + f", snapshot {t.snapshot[:12]}",
        )
        for t in tests
    ]
    passed = sum(1 for t in tests if t.passed)
    return _figure(
        f"Restore tests: {passed} of {len(tests)} passed; RTO trend",
        series_chart(
            f"{name}: restore time (RTO) per test",
            span,
            thin(marks, span, "restore tests", describe=lambda v: f"longest RTO {_seconds(v)}"),
            _seconds,
            height=SMALL_HEIGHT,
        ),
    )


def _recent(backups: Sequence[BackupEntry], open_: bool) -> str:
    """The newest backups as a table; unfolded when the source is not ok."""
    rows = []
    for b in list(reversed(backups))[:RECENT]:
        result = "ok" if b.ok else "failed"
        rows.append(
            f'<tr class="{"ok" if b.ok else "fail"}"><td>{_time(b.time)}</td>'
            f"<td>{esc(result)}</td><td>{esc(b.kind or '-')}</td>"
            f"<td>{esc(b.consistency or '-')}{' (quiesce missed)' if b.quiesce_missed else ''}</td>"
            f"<td>{esc(_bytes(b.bytes_added) if b.bytes_added is not None else '-')}</td>"
            f"<td>{esc(f'{b.pause_ms:.1f} ms' if b.pause_ms is not None else '-')}</td>"
            f'<td class="error">{esc(b.error or "")}</td></tr>'
        )
    if not rows:
        return ""
    return (
        f"<details{' open' if open_ else ''}><summary>Last {_count(len(rows), 'backup')}</summary>"
        '<table class="recent">'
        "<thead><tr><th>time</th><th>result</th><th>kind</th><th>consistency</th>"
        "<th>added</th><th>pause</th><th>error</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></details>"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _backup_title(b: BackupEntry) -> str:
    when = f"{b.time:%Y-%m-%d %H:%M} UTC"
    if not b.ok:
        return f"{when} FAILED: {b.error or 'failed'}"
    parts = [when, b.kind or "backup", b.consistency or ""]
    if b.quiesce_missed:
        parts.append("quiesce missed")
    if b.bytes_added is not None:
        parts.append(f"{_bytes(b.bytes_added)} added")
    if b.pause_ms is not None:
        parts.append(f"pause {b.pause_ms:.1f} ms")
    return " · ".join(p for p in parts if p)


def _growth_section(hist: History, span: Span) -> str:
    points = [
        Mark(t, float(total), "ok", f"{t:%Y-%m-%d %H:%M} UTC: {_bytes(total)} added so far")
        for t, total in hist.growth
    ]
    if not points:
        return ""
    before = [m for m in points if m.time < span.start]
    shown = before[-1:] + [m for m in points if m.time >= span.start]
    return (
        '<section class="growth"><h2>Repository growth</h2>'
        + _figure(
            f"Bytes added by the snapshots kept, all sources ({_bytes(hist.growth[-1][1])})",
            area_chart(
                "repository growth",
                span,
                thin(shown, span, "snapshots", describe=lambda v: f"{_bytes(v)} added so far"),
                _bytes,
                binary=True,
            ),
        )
        + "</section>"
    )


def _footer() -> str:
    return (
        "<footer>Read-only. The same facts as <code>cleancut status --json</code> "
        '(<a href="status.json">status.json</a>); charts from the repository\'s snapshot, '
        "backup-attempt and restore-test records.</footer>"
    )


def _bytes(n: float | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _seconds(value: float | None) -> str:
    return duration_text(value or 0.0)
