"""Entry point: the command group, and turning errors into one line and an exit code."""

from __future__ import annotations

import gc
import sys

import click
from cleancut.store.errors import CleancutError, ExitCode

from . import __version__
from .commands import register


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cleancut")
def cli() -> None:
    """cleancut: hot backup of running agents into an encrypted, deduplicating store."""


register(cli)


def main() -> None:
    # A backup allocates millions of small objects and almost no reference cycles;
    # at the default thresholds the collector spent seconds per GiB re-scanning the
    # in-memory index (py-spy). Collect far less often instead.
    gc.set_threshold(100_000, 50, 100)
    try:
        code = cli.main(standalone_mode=False)
    except CleancutError as exc:
        click.echo(f"cleancut: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("cleancut: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code else ExitCode.USAGE)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"cleancut: {exc.strerror or exc}{where}", err=True)
        sys.exit(ExitCode.FATAL)
    except KeyboardInterrupt:
        click.echo("cleancut: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
