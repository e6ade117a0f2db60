"""Keeping credentials written into a URL out of every line cleancut prints.

cleancut refuses credentials in a repository location or an endpoint URL (S3
credentials belong in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), and the
refusal itself must not echo them; the command line also passes every error
line through here, as a last guard.
"""

from __future__ import annotations

import re

# "scheme://userinfo@": everything between "://" and the first "@" before any "/".
_USERINFO = re.compile(r"(://)[^/\s@]*@")


def redact_userinfo(text: str) -> str:
    """The text with each URL's `user:password@` replaced by `***@`."""
    return _USERINFO.sub(r"\1***@", text)


def has_userinfo(url: str) -> bool:
    return _USERINFO.search(url) is not None
