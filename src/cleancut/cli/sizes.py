"""Sizes on the command line (256KiB, 1MiB, 4M): the grammar is settings/units.py's."""

from __future__ import annotations

import click

from cleancut.settings import units


def parse_size(text: str) -> int:
    try:
        return units.parse_size(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
