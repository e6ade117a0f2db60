"""Prometheus metrics: what a scrape or the textfile collector gets from a real repository.

History is written by the real command line with the injected clock (CLEANCUT_NOW), and
failed attempts with the store function `backup` calls, as tests/test_status.py does.
The alert rules are checked and unit-tested by promtool (Debian's prometheus package,
installed by scripts/test-tools); the dashboard's queries are checked against a real
exposition.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, PASSWORD, assert_no_traceback
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from cleancut.backend.local import LocalBackend
from cleancut.clock import iso
from cleancut.ops.metrics import COUNTERS, HISTOGRAMS, Event, Sample, additive
from cleancut.ops.prometheus_tally import settle
from cleancut.ops.prometheus_textfile import write_textfile
from cleancut.repository.attempts import record_backup_attempt
from cleancut.repository.repository import Repository
from cleancut.settings.config_file import ConfigFile
from cleancut.testing.sample import make_workspace, mutate_workspace

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "contrib" / "prometheus" / "cleancut-alerts.yml"
ALERT_TESTS = ROOT / "contrib" / "prometheus" / "cleancut-alerts.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "cleancut-dashboard.json"
T0 = datetime(2026, 11, 20, tzinfo=UTC)

Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def at(hours: float) -> dict[str, str]:
    return {"CLEANCUT_NOW": iso(T0 + timedelta(hours=hours))}


def parse(text: str) -> tuple[Scrape, dict[str, str]]:
    """Samples by (name, labels), and each family's type: as Prometheus parses them."""
    samples: Scrape = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def value(samples: Scrape, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def textfile(cli: CLI, tmp_path: Path, hours: float, cache: Path | None = None) -> str:
    """The metrics a command leaves in CLEANCUT_METRICS_TEXTFILE (here `snapshots`)."""
    out = tmp_path / "cleancut.prom"
    env = at(hours) | {"CLEANCUT_METRICS_TEXTFILE": str(out)}
    if cache is not None:
        env["CLEANCUT_CACHE_DIR"] = str(cache)
    res = cli.ok("snapshots", "-q", env=env)
    assert "warning" not in res.err, res.err
    return out.read_text()


def history(cli: CLI, workspace: Path) -> dict[str, Any]:
    """A hot (hooked) full with its pause, an incremental, a passing restore test, and
    then three failed attempts that missed quiesce: the source is critical."""
    full = cli.ok(
        "backup", str(workspace), "--name", "agent", "--pre", "true", "--json", env=at(0)
    ).json()
    mutate_workspace(workspace)
    inc = cli.ok("backup", str(workspace), "--name", "agent", "--json", env=at(1)).json()
    cli.ok("restore-test", "-q", env=at(2))
    os.environ["CLEANCUT_NOW"] = at(3)["CLEANCUT_NOW"]
    try:
        repo = Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)
        try:
            for _ in range(3):
                record_backup_attempt(
                    repo,
                    name="agent",
                    ok=False,
                    kind=None,
                    snapshot_id=None,
                    error="quiesce missed: the agent answered 'timeout'",
                    duration_s=2.0,
                    quiesce_missed=True,
                )
        finally:
            repo.close()
    finally:
        del os.environ["CLEANCUT_NOW"]
    return {"full": full, "inc": inc}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[CLI, dict[str, Any], str]:
    """One repository with history, and the text of its metrics at T0 + 4h."""
    base = tmp_path_factory.mktemp("real")
    cli = CLI(base / "repo", base / "cache")
    cli.init()
    made = history(cli, make_workspace(base / "agent"))
    return cli, made, textfile(cli, base, 4)


def test_metrics_say_what_status_says(real: tuple[CLI, dict[str, Any], str]):
    cli, made, text = real
    samples, types = parse(text)
    (source,) = cli.ok("status", "--json", env=at(4)).json()["sources"]

    assert types["cleancut_backup_attempts"] == "counter"
    assert types["cleancut_pause_seconds"] == "histogram"
    assert types["cleancut_health_state"] == "gauge"
    assert value(samples, "cleancut_backup_attempts_total", source="agent") == 5
    assert source["attempts"]["30d"] == 5
    assert value(samples, "cleancut_backup_failures_total", source="agent") == 3
    assert value(samples, "cleancut_quiesce_misses_total", source="agent") == 3
    assert value(samples, "cleancut_quiesce_misses_consecutive", source="agent") == 3
    assert source["state"] == "critical"
    assert value(samples, "cleancut_health_state", source="agent") == 2
    assert value(samples, "cleancut_health_reasons", source="agent") == len(source["reasons"])
    assert value(samples, "cleancut_last_attempt_success", source="agent") == 0

    snaps = cli.ok("snapshots", "--json").json()
    added = sum(s["summary"]["bytes_added"] for s in snaps)
    assert value(samples, "cleancut_bytes_added_total", source="agent") == added
    assert value(samples, "cleancut_snapshots_written_total", source="agent", kind="full") == 1
    assert value(samples, "cleancut_snapshots", source="agent") == 2
    assert value(samples, "cleancut_chain_length", source="agent") == source["chain_length"] == 2

    t0 = T0.timestamp()
    full = dict(source="agent", kind="full")
    assert value(samples, "cleancut_last_success_timestamp_seconds", **full) == t0
    assert (
        value(
            samples, "cleancut_last_success_timestamp_seconds", source="agent", kind="incremental"
        )
        == t0 + 3600
    )
    assert value(samples, "cleancut_chain_start_timestamp_seconds", source="agent") == t0
    assert value(samples, "cleancut_max_full_age_seconds", source="agent") == 86400
    assert value(samples, "cleancut_metrics_generated_timestamp_seconds") == t0 + 4 * 3600

    test = source["last_restore_test"]
    assert value(samples, "cleancut_restore_test_passed", source="agent") == 1
    assert value(samples, "cleancut_restore_test_rto_seconds", source="agent") == test["rto_s"]
    assert value(samples, "cleancut_restore_test_timestamp_seconds", source="agent") == (
        t0 + 2 * 3600
    )
    assert value(samples, "cleancut_restore_duration_seconds_count", source="agent") == 1
    assert value(samples, "cleancut_restore_duration_seconds_sum", source="agent") == test["rto_s"]

    # The hot full's pause, in seconds, in its bucket and not below it.
    pause = made["full"]["pause_ms"] / 1000
    assert value(samples, "cleancut_pause_seconds_count", source="agent") == 1
    assert value(samples, "cleancut_pause_seconds_sum", source="agent") == pytest.approx(pause)
    for (name, labels), v in samples.items():
        if name == "cleancut_pause_seconds_bucket":
            le = float(dict(labels)["le"])
            assert v == (1 if pause <= le else 0), (le, v)
    assert value(samples, "cleancut_backup_duration_seconds_count", **full) == 1
    assert (
        value(samples, "cleancut_backup_duration_seconds_sum", **full)
        == (snaps[0]["summary"]["duration_s"])
    )


def test_counters_never_go_down_when_snapshots_are_forgotten(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    full = repo_cli.ok(
        "backup", str(workspace), "--name", "agent", "--pre", "true", "--json", env=at(0)
    ).json()
    mutate_workspace(workspace)
    inc = repo_cli.ok("backup", str(workspace), "--name", "agent", "--json", env=at(1)).json()
    mutate_workspace(workspace, seed=9)
    repo_cli.ok("backup", str(workspace), "--name", "agent", env=at(30))  # a new chain
    before, _ = parse(textfile(repo_cli, tmp_path, 30))
    assert value(before, "cleancut_snapshots_written_total", source="agent", kind="full") == 2

    old = [full["snapshot_id"], inc["snapshot_id"]]
    repo_cli.ok("forget", *old, env=at(31))
    after, _ = parse(textfile(repo_cli, tmp_path, 31))
    assert value(after, "cleancut_snapshots", source="agent") == 1
    for name, labels in [
        ("cleancut_snapshots_written_total", {"source": "agent", "kind": "full"}),
        ("cleancut_snapshots_written_total", {"source": "agent", "kind": "incremental"}),
        ("cleancut_bytes_added_total", {"source": "agent"}),
        ("cleancut_pause_seconds_count", {"source": "agent"}),
        ("cleancut_backup_duration_seconds_count", {"source": "agent", "kind": "incremental"}),
        ("cleancut_backup_attempts_total", {"source": "agent"}),
    ]:
        assert value(after, name, **labels) == value(before, name, **labels), name

    # Another host (no tally of its own) counts what the repository holds now: a reset.
    elsewhere, _ = parse(textfile(repo_cli, tmp_path, 31, cache=tmp_path / "other-cache"))
    assert value(elsewhere, "cleancut_snapshots_written_total", source="agent", kind="full") == 1
    assert (
        "cleancut_snapshots_written_total",
        frozenset({"source": "agent", "kind": "incremental"}.items()),
    ) not in elsewhere


def _config(cli: CLI, workspace: Path, tmp_path: Path, extra: str = "") -> dict[str, str]:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    config = tmp_path / "cleancut.toml"
    config.write_text(
        f'repository = "{cli.repo}"\npassword_file = "{pw}"\n{extra}'
        f'[sources.agent]\npath = "{workspace}"\n'
    )
    return {"CLEANCUT_CONFIG": str(config)}


def test_tick_writes_the_textfile(repo_cli: CLI, workspace: Path, tmp_path: Path):
    env = _config(repo_cli, workspace, tmp_path) | at(0)
    out = tmp_path / "textfile" / "cleancut.prom"
    out.parent.mkdir()
    repo_cli.ok("tick", "-q", "--textfile", str(out), env=env)
    samples, _ = parse(out.read_text())
    assert value(samples, "cleancut_backup_attempts_total", source="agent") == 1
    assert value(samples, "cleancut_restore_test_passed", source="agent") == 1
    assert out.stat().st_mode & 0o777 == 0o644  # node_exporter runs as its own user
    assert [p.name for p in out.parent.iterdir()] == ["cleancut.prom"]  # no temporary left

    missing = repo_cli.run("tick", "--textfile", str(tmp_path / "no" / "x.prom"), env=env)
    assert missing.code == 1
    assert missing.err.strip().splitlines()[-1].startswith("cleancut: cannot write metrics")
    assert_no_traceback(missing)
    wrong = repo_cli.run("tick", "--textfile", str(tmp_path / "x.txt"), env=env)
    assert wrong.code == 1 and "only *.prom files" in wrong.err
    assert_no_traceback(wrong)


def test_any_command_writes_the_configured_textfile(repo_cli: CLI, workspace: Path, tmp_path: Path):
    env = _config(repo_cli, workspace, tmp_path, 'metrics_textfile = "metrics/cleancut.prom"\n')
    (tmp_path / "metrics").mkdir()
    repo_cli.ok("backup", str(workspace), "--name", "agent", env=env | at(0))
    written = tmp_path / "metrics" / "cleancut.prom"  # relative to the config file
    samples, _ = parse(written.read_text())
    assert value(samples, "cleancut_backup_attempts_total", source="agent") == 1

    # A failed command still refreshes it: its failed attempt is counted.
    failed = repo_cli.run("backup", str(tmp_path / "gone"), "--name", "agent", env=env | at(1))
    assert failed.code != 0
    samples, _ = parse(written.read_text())
    assert value(samples, "cleancut_backup_attempts_total", source="agent") >= 1

    # The environment wins; a file that cannot be written is one warning, not a failure.
    broken = env | {"CLEANCUT_METRICS_TEXTFILE": str(tmp_path / "no" / "x.prom")}
    res = repo_cli.run("snapshots", "-q", env=broken | at(2))
    assert res.code == 0
    assert res.err.strip() == (
        f"cleancut: warning: metrics textfile not written: cannot write metrics textfile "
        f"{tmp_path / 'no' / 'x.prom'}: No such file or directory"
    )
    # A command that fails keeps its own error as the one line.
    res = repo_cli.run("backup", str(tmp_path / "gone"), "--name", "agent", env=broken | at(3))
    assert res.code != 0 and "metrics" not in res.err
    assert_no_traceback(res)


READER = textwrap.dedent(
    """
    import sys, pathlib
    from prometheus_client.parser import text_string_to_metric_families
    path, ready, stop = map(pathlib.Path, sys.argv[1:])
    reads = bad = 0
    while True:
        stopping = stop.exists()
        text = path.read_text()
        try:
            names = {f.name for f in text_string_to_metric_families(text)}
            ok = text.endswith("\\n") and "cleancut_metrics_generated_timestamp_seconds" in names
        except Exception:
            ok = False
        reads += 1
        bad += not ok
        ready.touch()
        if stopping:
            break
    print(reads, bad)
    """
)


def test_a_reader_never_sees_a_partial_textfile(
    repo_cli: CLI, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    repo_cli.ok("backup", str(workspace), "--name", "agent", env=at(0))
    out = tmp_path / "cleancut.prom"
    monkeypatch.setenv("CLEANCUT_NOW", at(1)["CLEANCUT_NOW"])
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    try:
        write_textfile(out, repo, ConfigFile())
        ready, stop = tmp_path / "ready", tmp_path / "stop"
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(out), str(ready), str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        while not ready.exists():  # the reader is reading before the rewrites start
            assert reader.poll() is None
        for i in range(60):
            monkeypatch.setenv("CLEANCUT_NOW", iso(T0 + timedelta(hours=1, seconds=i)))
            write_textfile(out, repo, ConfigFile())
        stop.touch()
        reads, bad = map(int, reader.communicate(timeout=60)[0].split())
    finally:
        repo.close()
    assert bad == 0 and reads >= 1
    samples, _ = parse(out.read_text())
    assert (
        value(samples, "cleancut_metrics_generated_timestamp_seconds")
        == (T0 + timedelta(hours=1, seconds=59)).timestamp()
    )


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def test_the_alert_rules_are_valid_and_each_fires():
    checked = _promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", str(ALERT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = set(re.findall(r"^\s+- alert: (\w+)", ALERTS.read_text(), re.M))
    fired = set(
        re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", ALERT_TESTS.read_text())
    )
    assert alerts == fired  # every alert has series that fire it


def test_the_exposition_passes_promtools_lint(real: tuple[CLI, dict[str, Any], str]):
    """Names, units, _total suffixes, HELP texts: as `promtool check metrics` wants them."""
    linted = subprocess.run(
        ["promtool", "check", "metrics"],
        input=real[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert linted.returncode == 0 and not (linted.stdout + linted.stderr).strip(), (
        linted.stdout + linted.stderr
    )


def _queried(text: str) -> set[str]:
    return set(re.findall(r"\bcleancut_[a-z_]+", text))


def test_alerts_and_dashboard_query_only_metrics_that_exist(real: tuple[CLI, dict[str, Any], str]):
    samples, _ = parse(real[2])
    exposed = {name for name, _ in samples}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert len(exprs) > 15
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))  # Grafana keys panels by id
    cells = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        here = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & here and max(x for x, _ in here) < 24, p["title"]  # no overlap
        cells |= here
        assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
    assert _queried("\n".join(exprs)) - exposed == set()
    assert _queried(ALERTS.read_text()) - exposed == set()


_labels = st.sampled_from([(("source", "a"),), (("source", "b"),)])
_event = st.builds(
    Event,
    id=st.text("0123456789abcdef", min_size=1, max_size=4),
    counts=st.lists(
        st.builds(
            Sample,
            metric=st.sampled_from(sorted(COUNTERS)),
            labels=_labels,
            value=st.floats(0, 1e12, allow_nan=False),
        ),
        max_size=3,
    ),
    observations=st.lists(
        st.builds(
            Sample,
            metric=st.sampled_from(sorted(HISTOGRAMS)),
            labels=_labels,
            value=st.floats(0, 1e5, allow_nan=False),
        ),
        max_size=2,
    ),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rounds=st.lists(st.lists(_event, max_size=5, unique_by=lambda e: e.id), max_size=6))
def test_the_tally_never_goes_down_and_counts_each_event_once(
    tmp_path: Path, rounds: list[list[Event]]
):
    """Whatever events come and go between collections (and whatever the tally file
    went through, read back from disk each time), every total is the sum over each
    event seen once, so it never decreases."""
    directory = tmp_path / f"tally-{uuid.uuid4().hex}"
    seen: dict[str, Event] = {}
    previous: dict[Any, float] = {}
    for present in rounds:
        present = [e for e in present if seen.get(e.id, e) == e]  # an id names one event
        totals = settle(directory, present)
        seen.update({e.id: e for e in present})
        expected: dict[Any, float] = {}
        for event in seen.values():
            for key, v in additive(Event.from_json(event.id, event.to_json())).items():
                expected[key] = expected.get(key, 0.0) + v
        assert totals.keys() == expected.keys()
        for key, v in expected.items():
            assert totals[key] == pytest.approx(v, rel=1e-9, abs=1e-6)
            assert totals[key] >= previous.get(key, 0.0) - 1e-6
        previous = totals


def test_a_tally_that_cannot_be_written_gives_the_repositorys_sums(tmp_path: Path):
    """A cache directory that cannot be written (here: a file stands where it would be;
    as root no permission bit stops a write) does not stop the metrics: they are the sums
    over the events present, as a fresh host's."""
    (tmp_path / "cache").write_text("not a directory")
    event = Event("snapshot:1", counts=[Sample("cleancut_bytes_added", (("source", "a"),), 7.0)])
    totals = settle(tmp_path / "cache" / "repo-id", [event])
    assert totals == {("cleancut_bytes_added_total", (("source", "a"),)): 7.0}
