"""Paths as printed for people: one line each, nothing the terminal would interpret.

A file name may hold any byte but "/" and NUL: newlines, tabs, escape
sequences, bytes that are not UTF-8 (kept by Python as surrogate escapes).
Printed raw, a newline makes one entry look like two and an escape sequence
rewrites the terminal. shown_path() escapes them as GNU ls's
--quoting-style=escape does: backslash itself as \\\\, the usual C escapes (\\n,
\\t, \\r, ...), any other control or unprintable character as \\xNN or \\uNNNN,
and a byte that is not UTF-8 as \\xNN. Everything printable, spaces included,
stays as it is. Machine-readable output (--json) keeps the exact name.
"""

from __future__ import annotations

_C_ESCAPES = {
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch in _C_ESCAPES:
        return _C_ESCAPES[ch]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if ch == " " or ch.isprintable():
        return ch
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shown_path(path: str) -> str:
    """`path` escaped for a terminal: one line, unambiguous, printable."""
    if path.isprintable() and "\\" not in path:
        return path
    return "".join(_escape_char(ch) for ch in path)
