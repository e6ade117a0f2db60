"""Profiles, the config file, precedence with provenance, and `cleancut config show`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Result, assert_no_traceback
from hypothesis import given
from hypothesis import strategies as st

from cleancut.errors import ExitCode, UsageError
from cleancut.settings.config_file import ConfigFile, load_config
from cleancut.settings.effective import effective
from cleancut.settings.profiles import (
    CHAIN_CAP,
    DEFAULT_PROFILE,
    MAX_RESTORE_TEST_INTERVAL,
    MIN_JOURNAL_WINDOW,
    MISS_ALERT_THRESHOLD,
    PROFILES,
    field_names,
)
from cleancut.settings.units import (
    MAX_DURATION,
    format_bandwidth,
    format_duration,
    parse_bandwidth,
    parse_duration,
)

# --- the profiles are docs/architecture.md's table -------------------------------------

# Written as the table in docs/architecture.md reads, so a typo in either place fails here.
DESIGN_TABLE = {
    "quiesce_timeout": ("30s", "60s", "300s"),
    "memory_flush_interval": ("5s", "15s", "60s"),
    "checkpoint_cadence": ("1m", "5m", "15m"),
    "incremental_sync_interval": ("30s", "60s", "300s"),
    "bandwidth_cap_mbit": ("50", "100", "unlimited"),
    "max_full_age": ("12h", "24h", "72h"),
    "incremental_retention": ("24h", "72h", "168h"),
    "horizon": ("120s", "60s", "30s"),
    "restore_test_interval": ("7d", "7d", "7d"),
}


@pytest.mark.parametrize(
    "column, name", list(enumerate(["conservative", "standard", "permissive"]))
)
def test_profiles_match_the_design_table(column: int, name: str):
    profile = PROFILES[name]
    assert set(DESIGN_TABLE) == set(field_names())
    for field, row in DESIGN_TABLE.items():
        text = row[column]
        expected = parse_bandwidth(text) if field == "bandwidth_cap_mbit" else parse_duration(text)
        assert getattr(profile, field) == expected, (name, field)


def test_fixed_limits_and_default():
    assert DEFAULT_PROFILE == "standard"
    assert set(PROFILES) == {"conservative", "standard", "permissive"}
    assert CHAIN_CAP == 72 * 3600
    assert MAX_RESTORE_TEST_INTERVAL == 7 * 86400
    assert MISS_ALERT_THRESHOLD == 3
    assert MIN_JOURNAL_WINDOW == 300


def test_profile_values_are_floats():
    for profile in PROFILES.values():
        for name in field_names():
            value = getattr(profile, name)
            assert value is None or type(value) is float, (name, value)


def test_max_full_age_is_capped_by_the_chain_cap():
    standard = PROFILES["standard"]
    assert dataclasses.replace(standard, max_full_age=CHAIN_CAP).max_full_age == CHAIN_CAP
    with pytest.raises(ValueError, match="72h chain cap"):
        dataclasses.replace(standard, max_full_age=CHAIN_CAP + 1)


def test_restore_test_interval_may_be_shorter_never_longer():
    standard = PROFILES["standard"]
    assert dataclasses.replace(standard, restore_test_interval=86400).restore_test_interval == 86400
    with pytest.raises(ValueError, match="at least weekly"):
        dataclasses.replace(standard, restore_test_interval=MAX_RESTORE_TEST_INTERVAL + 1)


@pytest.mark.parametrize("name", [n for n in DESIGN_TABLE if n != "bandwidth_cap_mbit"])
@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan")])
def test_durations_must_be_positive_and_finite(name: str, value: float):
    with pytest.raises(ValueError):
        dataclasses.replace(PROFILES["standard"], **{name: value})


def test_bandwidth_must_be_positive_or_unlimited():
    standard = PROFILES["standard"]
    assert dataclasses.replace(standard, bandwidth_cap_mbit=None).bandwidth_cap_mbit is None
    with pytest.raises(ValueError, match="above 0"):
        dataclasses.replace(standard, bandwidth_cap_mbit=0)


def test_retention_never_shorter_than_the_rolling_journal():
    with pytest.raises(ValueError, match="rolling journal"):
        dataclasses.replace(PROFILES["standard"], incremental_retention=MIN_JOURNAL_WINDOW - 1)


# --- durations and bandwidth ------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("24h", 86400),
        ("7d", 604800),
        ("1h30m", 5400),
        ("1d2h3m4s5ms", 93784.005),
        ("90", 90),
        ("1.5", 1.5),
        ("0.25h", 900),
        (" 10m ", 600),
    ],
)
def test_parse_duration(text: str, seconds: float):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "5x", "m", "-5s", "1e3", "inf", "nan", "5m5m", "30m1h", "1h 30m", "5 m", "5.s"]
)
def test_parse_duration_refuses(text: str):
    with pytest.raises(ValueError, match="not a duration.*examples"):
        parse_duration(text)


@pytest.mark.parametrize(
    "seconds, text",
    [(300, "5m"), (86400, "24h"), (259200, "72h"), (604800, "7d"), (5400, "1h30m"), (0.5, "500ms")],
)
def test_format_duration(seconds: float, text: str):
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_duration_round_trip_whole_milliseconds(millis: int):
    seconds = millis / 1000
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert "." not in text  # whole milliseconds always read as units, not decimals


@given(st.floats(min_value=0, max_value=MAX_DURATION, allow_nan=False, allow_infinity=False))
def test_duration_round_trip_any_float(seconds: float):
    assert parse_duration(format_duration(seconds)) == seconds


@given(
    st.fixed_dictionaries(
        {unit: st.integers(min_value=0, max_value=10_000) for unit in ("d", "h", "m", "s", "ms")}
    ).filter(lambda parts: any(parts.values()))
)
def test_duration_components_add_up(parts: dict[str, int]):
    units = ("d", "h", "m", "s", "ms")  # largest first, as parse_duration requires
    text = "".join(f"{parts[unit]}{unit}" for unit in units if parts[unit])
    scale = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    expected_millis = sum(round(count * scale[unit] * 1000) for unit, count in parts.items())
    assert parse_duration(text) == expected_millis / 1000


@pytest.mark.parametrize(
    "text, mbit",
    [
        ("50", 50),
        ("50Mbit", 50),
        ("50 Mbit/s", 50),
        ("50mbps", 50),
        ("1Gbit", 1000),
        ("2.5", 2.5),
        ("unlimited", None),
        ("UNLIMITED", None),
    ],
)
def test_parse_bandwidth(text: str, mbit: float | None):
    assert parse_bandwidth(text) == mbit


@pytest.mark.parametrize("text", ["", "fast", "50M", "50KB", "-5", "50 Mbit/h"])
def test_parse_bandwidth_refuses(text: str):
    with pytest.raises(ValueError, match="not a bandwidth"):
        parse_bandwidth(text)


@given(st.one_of(st.none(), st.floats(min_value=1e-6, max_value=1e12)))
def test_bandwidth_round_trip(mbit: float | None):
    assert parse_bandwidth(format_bandwidth(mbit)) == mbit


# --- the config file and precedence -----------------------------------------

FULL_EXAMPLE = """\
repository = "/srv/backup/repo"
password_file = "/etc/cleancut/pass"
profile = "standard"
[overrides]
checkpoint_cadence = "10m"
[sources.agent]
path = "/home/agent/.openclaw"
profile = "conservative"
exclude = ["*.tmp", "cache/"]
tags = ["prod"]
[sources.agent.overrides]
max_full_age = "6h"
"""


def write_config(tmp_path: Path, text: str, name: str = "cleancut.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_the_example_of_the_issue(tmp_path: Path):
    config = load_config(write_config(tmp_path, FULL_EXAMPLE))
    assert config.repository == "/srv/backup/repo"
    assert config.password_file == "/etc/cleancut/pass"
    assert config.profile == "standard"
    assert config.overrides == {"checkpoint_cadence": 600}
    agent = config.sources["agent"]
    assert agent.path == Path("/home/agent/.openclaw")
    assert agent.profile == "conservative"
    assert agent.exclude == ("*.tmp", "cache/")
    assert agent.tags == ("prod",)
    assert agent.overrides == {"max_full_age": 21600}


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path):
    text = 'repository = "repo"\npassword_file = "pass"\n[sources.a]\npath = "agent"\n'
    config = load_config(write_config(tmp_path, text))
    assert config.repository == str(tmp_path / "repo")
    assert config.password_file == str(tmp_path / "pass")
    assert config.sources["a"].path == tmp_path / "agent"
    url = load_config(write_config(tmp_path, 'repository = "s3://bucket/x"\n', "u.toml"))
    assert url.repository == "s3://bucket/x"


def test_a_relative_config_path_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "etc").mkdir()
    write_config(tmp_path / "etc", 'repository = "repo"\n[sources.a]\npath = "../agent"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc/cleancut.toml"))
    assert config.path == tmp_path / "etc" / "cleancut.toml"
    assert config.repository == str(tmp_path / "etc" / "repo")
    assert config.sources["a"].path == tmp_path / "etc" / ".." / "agent"


def test_numbers_are_seconds_and_mbit(tmp_path: Path):
    text = "[overrides]\nquiesce_timeout = 45\nhorizon = 2.5\nbandwidth_cap_mbit = 20\n"
    config = load_config(write_config(tmp_path, text))
    assert config.overrides == {"quiesce_timeout": 45, "horizon": 2.5, "bandwidth_cap_mbit": 20}


def test_where_the_config_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CLEANCUT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_config(None) == ConfigFile()
    write_config(tmp_path, 'profile = "permissive"\n')
    assert load_config(None).profile == "permissive"
    elsewhere = write_config(tmp_path, 'profile = "conservative"\n', "other.toml")
    monkeypatch.setenv("CLEANCUT_CONFIG", str(elsewhere))
    assert load_config(None).profile == "conservative"
    explicit = write_config(tmp_path, "", "explicit.toml")
    assert load_config(explicit).profile is None
    monkeypatch.setenv("CLEANCUT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(UsageError, match="missing.toml: not found"):
        load_config(None)


# Every layer sets checkpoint_cadence (and names a profile) to a value of its own.
LAYERED = """\
profile = "permissive"
[overrides]
checkpoint_cadence = "2m"
[sources.agent]
path = "/a"
profile = "conservative"
[sources.agent.overrides]
checkpoint_cadence = "3m"
[sources.other]
path = "/b"
"""


def test_each_layer_beats_the_one_below(tmp_path: Path):
    config = load_config(write_config(tmp_path, LAYERED))
    bare = ConfigFile()
    key = "checkpoint_cadence"
    cases = [
        # (config, source, repo profile, command line) -> (value, origin)
        ((bare, None, None, {}), (300, "profile standard (default)")),
        ((bare, None, "conservative", {}), (60, "profile conservative (repository)")),
        (
            (dataclasses.replace(config, overrides={}), None, "conservative", {}),
            (900, "profile permissive (config file)"),
        ),
        (
            (dataclasses.replace(config, overrides={}, sources={}), None, None, {}),
            (900, "profile permissive (config file)"),
        ),
        ((config, None, "standard", {}), (120, "config file [overrides]")),
        ((config, "other", None, {}), (120, "config file [overrides]")),
        ((config, "agent", "standard", {}), (180, "source agent overrides")),
        ((config, "agent", "standard", {key: "4m"}), (240, "command line")),
    ]
    for (cfg, source, repo_profile, cli), (value, origin) in cases:
        result = effective(cfg, source, repo_profile, cli)
        assert (getattr(result.profile, key), result.origin[key]) == (value, origin), (
            source,
            repo_profile,
            cli,
        )


def test_source_profile_beats_the_config_files(tmp_path: Path):
    config = load_config(write_config(tmp_path, LAYERED))
    result = effective(config, "agent", "standard", {})
    assert result.profile_name == "conservative"
    assert result.origin["quiesce_timeout"] == "profile conservative (source agent)"
    assert result.profile.quiesce_timeout == 30
    # A source without a profile of its own takes the file's, not another source's.
    other = effective(config, "other", "standard", {})
    assert other.origin["quiesce_timeout"] == "profile permissive (config file)"
    assert other.profile.quiesce_timeout == 300


def test_every_field_has_an_origin_and_overrides_touch_only_their_field(tmp_path: Path):
    config = load_config(write_config(tmp_path, FULL_EXAMPLE))
    result = effective(config, "agent", None, {"bandwidth_cap_mbit": "unlimited"})
    assert set(result.origin) == set(field_names())
    assert result.origin == {
        "quiesce_timeout": "profile conservative (source agent)",
        "memory_flush_interval": "profile conservative (source agent)",
        "checkpoint_cadence": "config file [overrides]",
        "incremental_sync_interval": "profile conservative (source agent)",
        "bandwidth_cap_mbit": "command line",
        "max_full_age": "source agent overrides",
        "incremental_retention": "profile conservative (source agent)",
        "horizon": "profile conservative (source agent)",
        "restore_test_interval": "profile conservative (source agent)",
    }
    assert result.profile.bandwidth_cap_mbit is None
    assert result.profile.max_full_age == 6 * 3600


@pytest.mark.parametrize(
    "text, key, message",
    [
        ('colour = "blue"\n', "colour", "unknown key"),
        ('profile = "reckless"\n', "profile", "unknown profile 'reckless'"),
        ("[overrides]\nspeed = 1\n", "overrides.speed", "unknown setting 'speed'"),
        ('[overrides]\nhorizon = "soon"\n', "overrides.horizon", "not a duration"),
        ("[overrides]\nhorizon = true\n", "overrides.horizon", "expected a string or a number"),
        ('[overrides]\nmax_full_age = "96h"\n', "overrides.max_full_age", "72h chain cap"),
        (
            '[overrides]\nrestore_test_interval = "8d"\n',
            "overrides.restore_test_interval",
            "at least weekly",
        ),
        ('[sources.a]\nprofile = "standard"\n', "sources.a", "missing 'path'"),
        ('[sources.a]\npath = "/a"\nkind = "x"\n', "sources.a.kind", "unknown key"),
        ('[sources.a]\npath = "/a"\nprofile = "x"\n', "sources.a.profile", "unknown profile"),
        ('[sources.a]\npath = "/a"\ntags = "prod"\n', "sources.a.tags", "list of strings"),
        (
            '[sources."my agent"]\npath = "/a"\n[sources."my agent".overrides]\nhorizon = "-1s"\n',
            'sources."my agent".overrides.horizon',
            "not a duration",
        ),
        ('sources = "agent"\n', "sources", "expected a table"),
        ("repository = 5\n", "repository", "expected a non-empty string"),
    ],
)
def test_config_mistakes_name_the_file_and_the_key(
    tmp_path: Path, text: str, key: str, message: str
):
    path = write_config(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_config(path)
    line = str(caught.value)
    assert line.startswith(f"{path}: {key}: "), line
    assert message in line
    assert "\n" not in line


def test_unknown_source_and_bad_command_line_values(tmp_path: Path):
    config = load_config(write_config(tmp_path, FULL_EXAMPLE))
    with pytest.raises(UsageError, match="no source 'nosuch' \\(sources: agent\\)"):
        effective(config, "nosuch", None, {})
    with pytest.raises(UsageError, match="command line: max_full_age=73h: .*72h chain cap"):
        effective(config, None, None, {"max_full_age": "73h"})
    with pytest.raises(UsageError, match="unknown profile 'x'"):
        effective(config, None, "x", {})


# --- cleancut config show ---------------------------------------------------


def run_show(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Result:
    """`cleancut config show` with no repository, no passphrase and no CLEANCUT_* set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLEANCUT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cleancut.cli.main", "config", "show", *args],
        env=clean | (env or {}),
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("profile = \n", "not valid TOML"),
        ("[sources.a\n", "not valid TOML"),
        ('colour = "blue"\n', "colour: unknown key"),
        ('profile = "reckless"\n', "profile: unknown profile 'reckless'"),
        ('[overrides]\nhorizon = "soon"\n', "overrides.horizon: not a duration"),
        ('[overrides]\nmax_full_age = "4d"\n', "overrides.max_full_age: max_full_age 96h"),
        ('[overrides]\nrestore_test_interval = "14d"\n', "restore_test_interval: restore_test"),
    ],
)
def test_config_show_refuses_a_bad_file_in_one_line(tmp_path: Path, text: str, expected: str):
    path = write_config(tmp_path, text)
    res = run_show(tmp_path, "--config", str(path))
    assert res.code == ExitCode.USAGE == 2, res.err
    assert_no_traceback(res)
    assert str(path) in res.err
    assert expected in res.err
    assert res.out == ""


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "max_full_age=100h"], "72h chain cap"),
        (["--set", "restore_test_interval=30d"], "at least weekly"),
        (["--set", "horizon"], "not KEY=VALUE"),
        (["--set", "speed=1"], "unknown setting 'speed'"),
        (["--profile", "reckless"], "unknown profile 'reckless'"),
        (["--source", "agent"], "no config file"),
        (["--config", "missing.toml"], "missing.toml: not found"),
    ],
)
def test_config_show_refuses_bad_options_in_one_line(
    tmp_path: Path, args: list[str], expected: str
):
    res = run_show(tmp_path, *args)
    assert res.code == 2, res.err
    assert_no_traceback(res)
    assert expected in res.err


def test_config_show_json_shape(tmp_path: Path):
    path = write_config(tmp_path, FULL_EXAMPLE)
    res = run_show(
        tmp_path,
        "--config",
        str(path),
        "--source",
        "agent",
        "--profile",
        "permissive",
        "--set",
        "horizon=45s",
        "--repo",
        str(tmp_path / "no-such-repo"),
        "--json",
    )
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert set(doc) == {
        "config_file",
        "repository",
        "password_file",
        "sources",
        "source",
        "profile",
        "settings",
        "fixed",
    }
    assert doc["config_file"] == {"value": str(path), "origin": "--config"}
    assert doc["repository"] == {"value": str(tmp_path / "no-such-repo"), "origin": "--repo"}
    assert doc["password_file"] == {"value": "/etc/cleancut/pass", "origin": "config file"}
    assert doc["sources"] == ["agent"]
    # The source names no `validate` rules: only the defaults are listed.
    assert {rule["origin"] for rule in doc["source"].pop("validate")} == {"default"}
    assert doc["source"] == {
        "name": "agent",
        "path": "/home/agent/.openclaw",
        "dirs": {},
        "agent": None,
        "exclude": ["*.tmp", "cache/"],
        "tags": ["prod"],
        "preset": None,
        "resolved": [],
    }
    assert doc["profile"] == {
        "name": "conservative",
        "origin": "profile conservative (source agent)",
    }
    assert list(doc["settings"]) == sorted(field_names())  # emitted with sorted keys
    for name, setting in doc["settings"].items():
        assert set(setting) == {"value", "text", "origin"}, name
    assert doc["settings"]["horizon"] == {"value": 45.0, "text": "45s", "origin": "command line"}
    assert doc["settings"]["max_full_age"] == {
        "value": 21600.0,
        "text": "6h",
        "origin": "source agent overrides",
    }
    assert doc["settings"]["checkpoint_cadence"]["origin"] == "config file [overrides]"
    assert doc["settings"]["bandwidth_cap_mbit"] == {
        "value": 50.0,
        "text": "50 Mbit/s",
        "origin": "profile conservative (source agent)",
    }
    assert doc["fixed"] == {
        "chain_cap": 259200,
        "max_restore_test_interval": 604800,
        "miss_alert_threshold": 3,
        "min_journal_window": 300,
    }


def test_config_show_repository_precedence(tmp_path: Path):
    path = write_config(tmp_path, FULL_EXAMPLE)
    env = {"CLEANCUT_CONFIG": str(path)}
    doc = json.loads(run_show(tmp_path, "--json", env=env).out)
    assert doc["config_file"] == {"value": str(path), "origin": "CLEANCUT_CONFIG"}
    assert doc["repository"] == {"value": "/srv/backup/repo", "origin": "config file"}
    env["CLEANCUT_REPO"] = "/from/env"
    doc = json.loads(run_show(tmp_path, "--json", env=env).out)
    assert doc["repository"] == {"value": "/from/env", "origin": "CLEANCUT_REPO"}
    doc = json.loads(run_show(tmp_path, "--json", "--repo", "/from/option", env=env).out)
    assert doc["repository"] == {"value": "/from/option", "origin": "--repo"}


def test_config_show_finds_cleancut_toml_in_the_working_directory(tmp_path: Path):
    res = run_show(tmp_path, "--json")
    doc = json.loads(res.out)
    assert doc["config_file"] == {"value": None, "origin": "none found"}
    assert doc["repository"] == {"value": None, "origin": "not set"}
    assert {s["origin"] for s in doc["settings"].values()} == {"profile standard (default)"}
    write_config(tmp_path, 'profile = "permissive"\n')
    doc = json.loads(run_show(tmp_path, "--json").out)
    assert doc["config_file"] == {
        "value": str(tmp_path / "cleancut.toml"),
        "origin": "./cleancut.toml",
    }
    assert doc["settings"]["max_full_age"] == {
        "value": 259200.0,
        "text": "72h",
        "origin": "profile permissive (config file)",
    }


def test_config_show_text(tmp_path: Path):
    path = write_config(tmp_path, FULL_EXAMPLE)
    res = run_show(tmp_path, "--config", str(path), "--source", "agent")
    assert res.code == 0, res.err
    assert res.err == ""
    lines = [" ".join(line.split()) for line in res.out.splitlines()]
    assert "repository /srv/backup/repo (config file)" in lines
    assert "profile conservative (source agent)" in lines
    assert "checkpoint_cadence 10m config file [overrides]" in lines
    assert "max_full_age 6h source agent overrides" in lines
    assert "bandwidth_cap_mbit 50 Mbit/s profile conservative (source agent)" in lines
    assert "chain cap 72h" in lines
    assert "restore test at least every 7d" in lines
    assert "quiesce miss alert after 3 consecutive misses" in lines
    assert "rolling journal at least the last 5m" in lines
