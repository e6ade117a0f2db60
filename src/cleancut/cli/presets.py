"""The source presets the config file may name (`preset = "openclaw"`).

The settings package parses config files without knowing any agent runtime; the CLI,
which may import the hot-backup side, hands it this table. Each preset's module is
imported only when a source names it, so a command that reads a config without presets
pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cleancut.settings.config_file import Preset


def _openclaw(raw: dict[str, Any], base: Path) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    from cleancut.hot.openclaw_preset import resolve

    table, resolved = resolve(raw, base)
    return table, list(resolved)


PRESETS: Mapping[str, Preset] = {"openclaw": _openclaw}
