"""contrib/systemd: the units an operator installs load in systemd as written, run
commands and options cleancut has, and keep their sandbox.

`systemd-analyze verify` loads each unit (the templates as an instance) from a scratch
directory, with ExecStart's documented /usr/local/bin/cleancut replaced by this
installation's absolute path, since verify checks that the binary exists; any line it
prints (an unknown key, a bad value) fails the test. `systemd-analyze security
--offline` scores the sandbox without a running systemd, and `systemd-sysusers --root`
creates the service user in a scratch root.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONTRIB = Path(__file__).resolve().parent.parent / "contrib" / "systemd"
DOCUMENTED_BINARY = "/usr/local/bin/cleancut"
CLEANCUT = Path(sys.executable).parent / "cleancut"
INSTANCE = "agent"
SERVICES = ["cleancut-tick.service", "cleancut-daemon.service", "cleancut-restore-test@.service"]
TIMERS = ["cleancut-tick.timer", "cleancut-restore-test@.timer"]
# Each service's sandbox: a key and the value it must have (the whole set, in every one).
HARDENING = {
    "User": "cleancut",
    "ProtectSystem": "strict",
    "ProtectHome": "read-only",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "UMask": "0077",
    "StateDirectory": "cleancut",
    "CacheDirectory": "cleancut",
    "EnvironmentFile": "/etc/cleancut/cleancut.env",
    "LoadCredential": "passphrase:/etc/cleancut/passphrase",
}


def _keys(path: Path) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, by section-qualified key (`Service.User`)."""
    keys: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        keys.setdefault(f"{section}.{key}", []).append(value)
    return keys


def _install(tmp_path: Path, names: list[str], binary: str = str(CLEANCUT)) -> list[str]:
    """The units copied to tmp_path as systemd would load them (templates instantiated),
    with the binary's path substituted; their names there."""
    loaded = []
    for name in names:
        target = name.replace("@.", f"@{INSTANCE}.")
        text = (CONTRIB / name).read_text().replace(DOCUMENTED_BINARY, binary)
        (tmp_path / target).write_text(text)
        loaded.append(target)
    return loaded


def _verify(tmp_path: Path, units: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *units], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )


def test_every_unit_verifies_without_a_word(tmp_path: Path) -> None:
    assert CLEANCUT.is_file()
    proc = _verify(tmp_path, _install(tmp_path, SERVICES + TIMERS))
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    # The check above is only worth something if verify speaks up: a misspelt key and
    # a binary that is not there both do.
    (unit,) = _install(tmp_path, ["cleancut-tick.service"])
    path = tmp_path / unit
    path.write_text(path.read_text().replace("ProtectSystem=", "ProtectSytem="))
    assert "Unknown key 'ProtectSytem'" in _verify(tmp_path, [unit]).stderr
    (unit,) = _install(tmp_path, ["cleancut-tick.service"], binary="/nonexistent/cleancut")
    proc = _verify(tmp_path, [unit])
    assert proc.returncode != 0
    assert "/nonexistent/cleancut is not executable" in proc.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_sandboxed(name: str) -> None:
    keys = _keys(CONTRIB / name)
    missing = {
        key: value for key, value in HARDENING.items() if keys.get(f"Service.{key}") != [value]
    }
    assert missing == {}
    assert keys["Service.SystemCallFilter"] == ["@system-service", "~@privileged"]
    assert "CLEANCUT_PASSWORD_FILE=%d/passphrase" in keys["Service.Environment"]
    assert "TMPDIR=/var/tmp" in keys["Service.Environment"]


@pytest.mark.parametrize("name", SERVICES)
def test_the_sandbox_scores_low_exposure(name: str, tmp_path: Path) -> None:
    # --threshold is on systemd's 0-100 scale: 20 is an exposure of 2.0 ("OK") at most.
    (unit,) = _install(tmp_path, [name])
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", f"./{unit}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout.splitlines()[-1:] + [proc.stderr]
    assert "Overall exposure level" in proc.stdout


@pytest.mark.parametrize("name", SERVICES)
def test_exec_start_is_a_command_line_cleancut_accepts(name: str) -> None:
    (exec_start,) = _keys(CONTRIB / name)["Service.ExecStart"]
    argv = shlex.split(exec_start.replace("%i", INSTANCE))
    assert argv[0] == DOCUMENTED_BINARY
    # click parses every option before it acts on --help: an unknown option or a bad
    # value fails here with exit 2.
    proc = subprocess.run(
        [str(CLEANCUT), *argv[1:], "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", TIMERS)
def test_every_timer_starts_a_service_that_is_shipped(name: str) -> None:
    assert (CONTRIB / name.replace(".timer", ".service")).is_file()
    assert _keys(CONTRIB / name)["Install.WantedBy"] == ["timers.target"]


def test_the_daemon_replaces_the_tick_timer() -> None:
    assert _keys(CONTRIB / "cleancut-daemon.service")["Unit.Conflicts"] == ["cleancut-tick.timer"]


def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    conf = tmp_path / "cleancut.conf"
    shutil.copy(CONTRIB / "cleancut.sysusers", conf)
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(conf)], check=True, capture_output=True,
        timeout=60,
    )
    (entry,) = [
        line for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
        if line.startswith("cleancut:")
    ]
    assert entry.split(":")[5:] == ["/var/lib/cleancut", "/usr/sbin/nologin"]
    assert "cleancut:" in (tmp_path / "etc" / "group").read_text()


def test_the_environment_file_names_the_config() -> None:
    lines = [
        line for line in (CONTRIB / "cleancut.env").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == ["CLEANCUT_CONFIG=/etc/cleancut/cleancut.toml"]
