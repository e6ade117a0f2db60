"""`cleancut completion SHELL`: print the shell completion script for bash, zsh or fish.

The script is click's own (the same text `_CLEANCUT_COMPLETE=bash_source cleancut`
prints): sourced by the shell, it asks `cleancut` itself for the candidates at each
TAB, so commands, options and choices added later complete without a new script.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

PROG_NAME = "cleancut"
COMPLETE_VAR = "_CLEANCUT_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def script(root: click.Command, shell: str) -> str:
    """The completion script of `root` for `shell` (one of SHELLS)."""
    completer = get_completion_class(shell)
    if completer is None:  # click knows every name in SHELLS; a newer click may drop one
        raise click.BadParameter(f"no completion for {shell}", param_hint="SHELL")
    return completer(root, {}, PROG_NAME, COMPLETE_VAR).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS), metavar="SHELL")
@click.pass_context
def command(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(cleancut completion bash)"      in ~/.bashrc
    zsh:   eval "$(cleancut completion zsh)"       in ~/.zshrc (after compinit)
    fish:  cleancut completion fish > ~/.config/fish/completions/cleancut.fish
    """
    click.echo(script(ctx.find_root().command, shell), nl=False)
