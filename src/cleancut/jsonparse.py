"""JSON parsing for everything cleancut reads from disk or a socket.

`json.loads` raises RecursionError, not ValueError, on input nested deeper than
the interpreter's recursion limit (`[` repeated 100,000 times is 100 KB). Every
reader already turns ValueError into one clear line; `loads` here makes deep
nesting one more ValueError, so no reader can miss it and print a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class TooDeep(ValueError):
    """JSON nested deeper than the parser recurses."""


def loads(
    data: str | bytes | bytearray,
    *,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """`json.loads`, except that nesting too deep to parse is a ValueError (TooDeep)."""
    try:
        return json.loads(data, object_pairs_hook=object_pairs_hook)
    except RecursionError:
        raise TooDeep("JSON nested deeper than cleancut parses") from None
