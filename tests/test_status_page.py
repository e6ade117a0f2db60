"""The status page `cleancut daemon` serves, loaded in a real headless Chromium.

Three weeks of injected-clock history (statuspage_history.py) in a real repository; a
real `cleancut daemon` process serves it on loopback; Debian's chromium loads it over
the DevTools protocol (cdp.py), with JavaScript on and off. The page must show what
`status --json` says (it serves that very document as /status.json), draw every
backup attempt on the timeline, and make the browser report no error at all.
Markup in a source name and in an error is served on a page of its own and must stay
text in the browser. The screenshot is kept as an artifact (its path is printed);
with CLEANCUT_UPDATE_SCREENSHOT=1 it also replaces docs/images/status-page.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cdp import Browser, Page
from conftest import CLI, PASSWORD
from hypothesis import given, settings
from hypothesis import strategies as st
from statuspage_history import END, GONE, RESEARCH, build

from cleancut.archiver.backup import Archiver, BackupOptions
from cleancut.backend.local import LocalBackend
from cleancut.clock import iso
from cleancut.errors import CleancutError
from cleancut.ops.health import Finding, SourceHealth
from cleancut.ops.history import BackupEntry, History, SourceHistory, history
from cleancut.ops.page.document import _anchor, render_page
from cleancut.ops.page.server import StatusPageServer
from cleancut.ops.status import StatusOutcome
from cleancut.repository.repository import Repository
from cleancut.testing.sample import mutate_workspace

DOCS_IMAGE = Path(__file__).parent.parent / "docs" / "images" / "status-page.png"
NOW = {"CLEANCUT_NOW": iso(END)}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CLI, str]]:
    """A repository with three weeks of history, and a daemon serving its page."""
    root = tmp_path_factory.mktemp("statuspage")
    cli = CLI(root / "repo", root / "cache")
    cli.init()
    build(root, cli.repo, cli.cache, PASSWORD)
    proc = subprocess.Popen(
        cli.command("daemon", "--interval", "1h", "--metrics-port", "-1", "--page-port", "0"),
        env=cli.env | NOW,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"status page on (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        url = match.group(1)
        for _ in range(1200):  # the first render follows the first tick
            if json.loads(_get(url + "status.json"))["state"] != "unknown":
                break
            time.sleep(0.1)
        yield cli, url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = Browser(tmp_path_factory.mktemp("chromium"))
    try:
        yield b
    finally:
        b.close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return bytes(reply.read())


def _rows(page: Page) -> list[list[str]]:
    return list(
        page.js(
            "Array.from(document.querySelectorAll('table.sources tr.source')).map(r => "
            "[r.querySelector('td.name').textContent, r.querySelector('.badge').textContent, "
            "r.querySelector('td.reasons').textContent])"
        )
    )


def test_the_page_serves_what_status_json_says(served: tuple[CLI, str]):
    cli, url = served
    served_text = _get(url + "status.json").decode()
    assert served_text == cli.ok("status", "--json", env=NOW).out  # byte for byte
    document = json.loads(served_text)
    assert document["state"] == "critical"
    states = {s["name"]: s["state"] for s in document["sources"]}
    assert states == {"agent": "ok", RESEARCH: "warn", "mail-agent": "critical"}
    with pytest.raises(urllib.error.HTTPError) as missing:
        _get(url + "etc/passwd")
    assert missing.value.code == 404


def test_the_browser_shows_sources_states_reasons_and_the_timeline(
    served: tuple[CLI, str], browser: Browser, tmp_path: Path
):
    cli, url = served
    document = cli.ok("status", "--json", env=NOW).json()
    by_name = {s["name"]: s for s in document["sources"]}
    page = browser.page()
    page.load(url)

    assert page.js("document.title") == "cleancut status: critical"
    rows = _rows(page)
    assert [(name, state) for name, state, _ in rows] == [
        ("mail-agent", "critical"),  # worst first
        (RESEARCH, "warn"),
        ("agent", "ok"),
    ]
    reasons = {name: text for name, _, text in rows}
    for name, source in by_name.items():
        for reason in source["reasons"]:
            assert reason in reasons[name]
    assert "3 consecutive backup windows missed quiesce" in reasons["mail-agent"]
    assert reasons["agent"] == "all well"

    assert GONE in reasons[RESEARCH]  # the failed attempt names the missing directory

    # Every recorded attempt is on its source's timeline: fulls, incrementals, failures.
    for name, source in by_name.items():
        marks = page.js(
            f"Array.from(document.querySelectorAll({json.dumps(_section(name))} + "
            "' svg .sym')).map(e => e.getAttribute('class'))"
        )
        failed = [m for m in marks if "fail" in m.split()]
        drawn = [m for m in marks if "miss" not in m.split()]
        attempts = source["attempts"]["30d"]  # the whole history is within 30 days
        assert len(drawn) == attempts
        assert len(failed) == round((1 - source["success_rate"]["30d"]) * attempts)
    agent_marks = page.js(
        f"Array.from(document.querySelectorAll({json.dumps(_section('agent'))} + ' svg .sym'))"
        ".map(e => e.getAttribute('class'))"
    )
    assert sum("miss" in m.split() for m in agent_marks) == 2
    tips = page.js(
        f"Array.from(document.querySelectorAll({json.dumps(_section('agent'))} + "
        "' svg .sym.fail title')).map(t => t.textContent)"
    )
    assert len(tips) == 3 and all("FAILED: cannot read source" in t for t in tips)

    captions = page.js(
        "Array.from(document.querySelectorAll('figcaption')).map(f => f.textContent)"
    )
    assert "Restore tests: 3 of 4 passed; RTO trend" in captions
    assert any(c.startswith("Agent pause per hot backup (max 34.9 ms)") for c in captions)
    assert any(c.startswith("Bytes added by the snapshots kept") for c in captions)

    # The optional script ran (times shown in local time) and nothing went wrong.
    assert page.js("document.querySelectorAll('time[title]').length") > 0
    assert page.errors() == []

    shot = tmp_path / "status-page.png"
    page.screenshot(shot)
    print(f"status page screenshot: {shot}")
    assert shot.stat().st_size > 50_000
    if os.environ.get("CLEANCUT_UPDATE_SCREENSHOT") == "1":
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGE)


def test_the_page_reads_the_same_with_javascript_off(
    served: tuple[CLI, str], browser: Browser, tmp_path: Path
):
    _, url = served
    page = browser.page()
    page.call("Emulation.setScriptExecutionDisabled", value=True)
    page.load(url)
    assert page.js("document.querySelectorAll('time[title]').length") == 0  # no script ran
    assert [(n, s) for n, s, _ in _rows(page)] == [
        ("mail-agent", "critical"),
        (RESEARCH, "warn"),
        ("agent", "ok"),
    ]
    # The charts are laid out (drawn with a size), not waiting for a script.
    widths = page.js(
        "Array.from(document.querySelectorAll('svg.chart'))"
        ".map(s => s.getBoundingClientRect().width)"
    )
    assert len(widths) >= 10 and min(widths) > 200
    shot = tmp_path / "status-page-nojs.png"
    page.screenshot(shot)
    print(f"status page screenshot without JavaScript: {shot}")
    assert page.errors() == []


INJECTED = "<script>alert(1)</script>"
MARKUP_ERROR = "cannot read source /srv/<img src=x onerror=alert(2)>: No such file or directory"


def test_markup_in_a_source_name_and_an_error_stays_text_in_the_browser(browser: Browser):
    """Served as the daemon serves it (same server, same headers), the page shows the
    markup as text: no script but the page's own runs, no element is made of it."""
    server = StatusPageServer("127.0.0.1", 0)
    server.page = _one_source_page(INJECTED, MARKUP_ERROR).encode()
    server.start()
    try:
        page = browser.page()
        page.load(f"http://127.0.0.1:{server.port}/")
        assert page.js("document.scripts.length") == 1  # the page's own
        assert page.js("document.images.length") == 0
        text = page.js("document.body.innerText")
        assert INJECTED in text and MARKUP_ERROR in text
        assert page.errors() == []
    finally:
        server.stop()


def test_the_error_check_sees_what_a_broken_page_reports(browser: Browser):
    """The check the page passes is not blind: a console error, an exception and a
    resource that fails to load are all reported."""
    page = browser.page()
    page.load(
        "data:text/html,<script>console.error('boom');</script>"
        "<script>undefinedFunction()</script><img src='http://127.0.0.1:9/missing.png'>"
    )
    found = page.errors()
    assert any("console: boom" in e for e in found)
    assert any(e.startswith("exception:") and "undefinedFunction" in e for e in found)
    assert any(e.startswith("log:") for e in found)


def _section(name: str) -> str:
    """The CSS selector of a source's section (its fragment id)."""
    return f"#source-{_anchor(name)}"


# --- escaping, without a browser -------------------------------------------------------

ALLOWED_TAGS = {
    "html", "head", "meta", "title", "link", "style", "body", "script", "header", "h1", "h2",
    "div", "span", "section", "table", "thead", "tbody", "tr", "th", "td", "a", "ul", "li",
    "p", "figure", "figcaption", "svg", "line", "text", "rect", "circle", "path", "polyline",
    "polygon", "details", "summary", "time", "footer", "code",
}  # fmt: skip


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.text).append(data)


def _one_source_page(name: str, reason: str) -> str:
    health = SourceHealth(name, findings=[Finding("warn", reason)])
    outcome = StatusOutcome(datetime(2026, 11, 29, tzinfo=UTC), [health], check=False)
    return render_page(outcome, History({}, []))


@settings(max_examples=60, deadline=None)
@given(name=st.text(min_size=1, max_size=40), reason=st.text(max_size=60))
def test_any_source_name_and_reason_stay_text(name: str, reason: str):
    parsed = _Tags()
    parsed.feed(_one_source_page(name, reason))
    assert set(parsed.tags) <= ALLOWED_TAGS
    assert parsed.tags.count("script") == 1
    assert not any(k.startswith("on") for k, _ in parsed.attrs)  # no event handler attribute
    assert name in "".join(parsed.text)


def test_a_script_source_name_is_escaped_in_the_html():
    page = _one_source_page(INJECTED, MARKUP_ERROR)
    assert "<script>alert(1)" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_page_binds_to_loopback_only():
    with pytest.raises(CleancutError, match="loopback only"):
        StatusPageServer("0.0.0.0", 0)


def test_a_dense_history_is_drawn_at_the_page_resolution_and_loses_no_count():
    """30 days of a backup every 5 minutes: 8640 attempts, grouped per time bucket on
    the charts, every attempt counted in a tooltip, the longest pause still shown."""
    now = datetime(2026, 11, 29, tzinfo=UTC)
    backups = []
    for i in range(8640):
        ok = i % 97 != 0
        backups.append(
            BackupEntry(
                time=now - timedelta(minutes=5 * (8640 - i)),
                ok=ok,
                kind=("full" if i % 288 == 0 else "incremental") if ok else None,
                consistency="quiesced" if i % 500 else "unquiesced",
                quiesce_missed=i % 500 == 0,
                snapshot=None,
                error=None if ok else "agent unreachable",
                bytes_added=4096 if ok else None,
                pause_ms=(250.0 if i == 4321 else 10.0 + i % 7) if ok else None,
                duration_s=1.0,
            )
        )
    hist = History({"agent": SourceHistory("agent", backups)}, [])
    outcome = StatusOutcome(now, [SourceHealth("agent")], check=False)
    page = render_page(outcome, hist)
    assert len(page) < 400_000  # one element per attempt would be megabytes

    counted = 0
    for css, title in re.findall(r'class="sym ([^"]*)"[^>]*><title>([^<]*)</title>', page):
        if "miss" in css.split():
            continue
        grouped = re.match(r"(\d+) (full backups|incremental backups|failed attempts), ", title)
        counted += int(grouped.group(1)) if grouped else 1
    assert counted == len(backups)
    assert "Agent pause per hot backup (max 250.0 ms)" in page
    assert "longest pause 250.0 ms" in page  # the spike's group keeps it


def test_the_history_holds_attempts_and_snapshots_written_without_one(
    repo_cli: CLI, workspace: Path
):
    """A backup records its attempt; a snapshot written without one (an older version,
    `copy`) is still on the timeline, as a backup that worked."""
    repo_cli.ok("backup", str(workspace), "--name", "agent", env=NOW)
    mutate_workspace(workspace)
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CLEANCUT_NOW", iso(END + timedelta(hours=1)))
            plain = Archiver(repo, workspace, BackupOptions(name="agent")).run().snapshot
        entries = history(repo).sources["agent"].backups
    finally:
        repo.close()
    assert [(e.kind, e.ok, e.time) for e in entries] == [
        ("full", True, END),
        ("incremental", True, END + timedelta(hours=1)),
    ]
    assert entries[1].snapshot == plain.id and entries[1].bytes_added is not None


def test_an_empty_repository_says_so_and_is_critical():
    page = render_page(
        StatusOutcome(datetime(2026, 11, 29, tzinfo=UTC), [], check=False), History({}, [])
    )
    assert "<title>cleancut status: critical</title>" in page  # as status --check: exit 4
    assert "No backups yet: the repository holds no snapshot and no backup attempt." in page
