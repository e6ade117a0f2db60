"""Secrets reach neither the freeze watchdog nor `config show`'s output.

The watchdog is a child process like a hook: it gets our environment without
the passphrase or storage credentials. `config show` prints the repository
location; one given with `user:password@` in it is printed with `***@`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLI

from cleancut.hot.freeze import _start_watchdog, _stop_watchdog

SECRETS = {
    "CLEANCUT_PASSWORD": "hunter2-passphrase",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
    "OPENAI_API_KEY": "sk-not-for-children",
}


def test_the_freeze_watchdog_gets_no_secret(monkeypatch: pytest.MonkeyPatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLEANCUT_HARMLESS", "kept")
    group = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    try:
        watchdog = _start_watchdog(group.pid, 60.0)  # returns once it said "ready"
        try:
            environ = Path(f"/proc/{watchdog.pid}/environ").read_bytes().split(b"\0")
        finally:
            _stop_watchdog(watchdog)
    finally:
        group.send_signal(signal.SIGKILL)
        group.wait()
    names = {item.partition(b"=")[0].decode() for item in environ if item}
    assert "CLEANCUT_HARMLESS" in names
    assert not names & SECRETS.keys()
    assert not any(value.encode() in b"\0".join(environ) for value in SECRETS.values())


@pytest.mark.parametrize("how", ["env", "option"])
def test_config_show_redacts_credentials_in_the_repository_location(
    cli: CLI, tmp_path: Path, how: str
):
    location = "s3://AKIAEXAMPLE:wJalrXUtnFEMI@s3.example.com/bucket"
    if how == "env":
        text = cli.run("config", "show", env={"CLEANCUT_REPO": location})
        js = cli.run("config", "show", "--json", env={"CLEANCUT_REPO": location})
    else:
        text = cli.run("config", "show", "--repo", location)
        js = cli.run("config", "show", "--json", "--repo", location)
    for res in (text, js):
        assert res.code == 0, res.err
        assert "wJalrXUtnFEMI" not in res.out + res.err
        assert "AKIAEXAMPLE" not in res.out + res.err
    assert "s3://***@s3.example.com/bucket" in text.out
    assert js.json()["repository"]["value"] == "s3://***@s3.example.com/bucket"
