"""Parsing sizes like 256KiB, 1MiB, 4M (the options of `init`)."""

from __future__ import annotations

import re

import click

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1000,
    "KIB": 1024,
    "M": 1 << 20,
    "MB": 10**6,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 10**9,
    "GIB": 1 << 30,
}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise click.BadParameter(f"not a size: {text!r} (examples: 512KiB, 1MiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
