"""Secrets stay in cleancut: not in a child's environment, a core file, or an error line.

Hooks, the alert command and the restore test's smoke command dump their
environment to a file; none of the secrets cleancut was given may be in it.
A pre hook reads its parent's /proc limits: cleancut runs with no core file.
A location or endpoint with `user:secret@` in it is refused without echoing
the secret.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import CLI, PASSWORD, assert_no_traceback
from test_hot_backup import start_agent, stop_agent

from cleancut.childenv import child_env, is_secret_name

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-1",
    "AWS_SESSION_TOKEN": "aws-session-value-2",
    "AWS_ACCESS_KEY_ID": "aws-key-id-value-3",
    "OPENCLAW_GATEWAY_TOKEN": "gateway-token-value-4",
    "CLEANCUT_TO_PASSWORD": "replica-password-value-5",
    "CLEANCUT_NEW_PASSWORD": "new-password-value-6",
    "OPENAI_API_KEY": "api-key-value-7",
    "PGPASSWORD": "pg-password-value-8",
}
KEPT = {"CLEANCUT_TEST_HARMLESS": "harmless-value"}


def _no_secret(dump: Path) -> None:
    text = dump.read_text()
    for value in [PASSWORD, *SECRETS.values()]:
        assert value not in text, f"{value!r} reached a child process"
    assert "harmless-value" in text and "PATH=" in text  # the rest of the environment is there


def test_the_secret_rule_by_name():
    for name in [*SECRETS, "CLEANCUT_PASSWORD", "CLEANCUT_PASSWORD_FILE", "MY_DB_PASSWD"]:
        assert is_secret_name(name), name
    for name in ["PATH", "HOME", "CLEANCUT_REPO", "CLEANCUT_PHASE", "KEYMAP", "PWD", "LANG"]:
        assert not is_secret_name(name), name
    env = child_env({"EXTRA_TOKEN": "given on purpose"}, base={"A_TOKEN": "x", "B": "y"})
    assert env == {"B": "y", "EXTRA_TOKEN": "given on purpose"}


def test_hooks_get_no_secret_and_cleancut_dumps_no_core(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("data\n")
    pre, post, limits = tmp_path / "pre.env", tmp_path / "post.env", tmp_path / "limits"
    res = repo_cli.run(
        "backup", str(src), "--name", "hooked",
        "--pre", f"env > {pre}; cat /proc/$PPID/limits > {limits}",
        "--post", f"env > {post}",
        env=SECRETS | KEPT,
    )  # fmt: skip
    assert res.code == 0, res.err
    _no_secret(pre)
    _no_secret(post)
    core = next(line for line in limits.read_text().splitlines() if "core file" in line)
    assert core.split()[-3:] == ["0", "0", "bytes"], core


def test_the_alert_command_gets_no_secret(repo_cli: CLI, tmp_path: Path):
    hung = start_agent(tmp_path, "--hang", name="hung")
    dump = tmp_path / "alert.env"
    try:
        for _ in range(3):
            res = repo_cli.run(
                "backup", str(hung.root), "--name", "hung", "--agent", hung.address,
                "--quiesce-timeout", "1s", "--alert-command", f"env > {dump}",
                env=SECRETS | KEPT,
            )  # fmt: skip
            assert res.code == 7, res.err
    finally:
        stop_agent(hung)
    _no_secret(dump)


def test_the_smoke_command_gets_no_secret(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("data\n")
    repo_cli.ok("backup", str(src), "--name", "smoked")
    dump = tmp_path / "smoke.env"
    res = repo_cli.run("restore-test", "--smoke", f"env > {dump}", env=SECRETS | KEPT)
    assert res.code == 0, res.err
    _no_secret(dump)


def test_the_cli_process_is_not_dumpable():
    """PR_SET_DUMPABLE 0: no core piped to a handler, no ptrace by the same user."""
    probe = (
        "import ctypes; from cleancut.cli.main import no_core_dumps; no_core_dumps(); "
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"  # PR_GET_DUMPABLE
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.strip() == "0", out.stderr


def test_credentials_in_a_url_are_refused_and_never_printed(cli: CLI, tmp_path: Path):
    secret = "sup3rs3cret"
    cases = [
        {"CLEANCUT_REPO": f"s3://AKIAEXAMPLE:{secret}@bucket/prefix"},
        {
            "CLEANCUT_REPO": "s3://bucket/prefix",
            "AWS_ENDPOINT_URL": f"http://u:{secret}@127.0.0.1:9",
        },
        {"CLEANCUT_REPO": "s3://bucket", "AWS_ENDPOINT_URL_S3": f"u:{secret}@127.0.0.1:9"},
    ]
    for env in cases:
        for command in (["snapshots"], ["status"]):
            res = cli.run(*command, env=env, timeout=120)
            assert res.code == 2, (env, res.err)
            assert_no_traceback(res)
            assert secret not in res.out + res.err, (env, res.err)
            assert "***@" in res.err


def test_credentials_in_a_config_file_location_are_refused_and_never_printed(
    cli: CLI, tmp_path: Path
):
    secret = "c0nfigs3cret"
    for body in (
        f'repository = "s3://AK:{secret}@bucket/p"\n',
        f'[replication]\nto = "s3://AK:{secret}@replica"\n',
    ):
        config = tmp_path / "cleancut.toml"
        config.write_text(body)
        for command in (["config", "show"], ["config", "show", "--json"], ["snapshots"]):
            res = cli.run(*command, "--config", str(config))
            assert res.code == 2, (body, res.out, res.err)
            assert_no_traceback(res)
            assert secret not in res.out + res.err, (body, res.err)
