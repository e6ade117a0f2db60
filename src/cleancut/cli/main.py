"""Entry point: the command group, and turning errors into one line and an exit code.

Before anything else the process makes itself undumpable: the passphrase and
the repository keys live in its memory, and a core file of a crashed cleancut
would hold them. RLIMIT_CORE 0 (soft and hard, inherited by children) stops
the core file; PR_SET_DUMPABLE 0 also stops a core piped to a handler
(systemd-coredump, apport) and a ptrace or /proc/PID/mem read by another
process of the same user. Every error line goes through redact_userinfo, so
`user:password@` in a URL never reaches the terminal or a log.

Exit codes are decided here and nowhere else on the command line: a command returns
its engine's outcome (cleancut.outcome), whose exit_code becomes the process's; a
CleancutError becomes its message and its own code; a usage error, 2; an interrupt, 130.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import os
import resource
import sys
import threading
from typing import NoReturn

import click

from cleancut.errors import CleancutError, ExitCode
from cleancut.outcome import Outcome
from cleancut.redact import redact_userinfo

from . import __version__
from .commands import LazyGroup


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cleancut")
def cli() -> None:
    """cleancut: hot backup of running agents into an encrypted, deduplicating store."""


PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def no_core_dumps() -> None:
    """No core file of this process, ever; no ptrace or /proc/PID/mem by its peers."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _echo_error(message: str) -> None:
    click.echo(redact_userinfo(message), err=True)


def exit_code_of(returned: object) -> int:
    """The exit code of what a command returned: its outcome's, click's own (an int,
    for --help and --version), else 0."""
    if isinstance(returned, Outcome):
        return returned.exit_code
    if isinstance(returned, int):
        return returned
    return ExitCode.OK


def main() -> None:
    no_core_dumps()
    # A backup allocates millions of small objects and almost no reference cycles;
    # at the default thresholds the collector spent seconds per GiB re-scanning the
    # in-memory index (py-spy). Collect far less often instead.
    gc.set_threshold(100_000, 50, 100)
    try:
        returned = cli.main(standalone_mode=False)
    except CleancutError as exc:
        _echo_error(f"cleancut: {exc}")
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("cleancut: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        # click declares `message` Final; the instance's is rewritten once, before show()
        exc.message = redact_userinfo(exc.message)  # type: ignore[misc]
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code else ExitCode.USAGE)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        _echo_error(f"cleancut: {exc.strerror or exc}{where}")
        sys.exit(ExitCode.FATAL)
    except KeyboardInterrupt:
        click.echo("cleancut: interrupted", err=True)
        sys.exit(130)
    leave(exit_code_of(returned))


def leave(code: int) -> NoReturn:
    """Exit after a command completed, without tearing the interpreter down.

    Everything the command wrote is closed by then (the repository, its cache, the
    worker pool); what remains is freeing memory object by object (the blob index,
    the tree's state: 0.09-0.19 s after an unchanged backup of the 1 GiB corpus,
    docs/decisions/0011-unchanged-backup-path.md), which the kernel does at once.
    The interpreter's own exit steps that matter are kept, in its order: other
    non-daemon threads are joined, the atexit handlers run, the standard streams
    are flushed.
    """
    me = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not me and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
