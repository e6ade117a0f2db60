"""What went wrong with an S3 request: obstore's errors reduced to a kind (transient,
missing, credentials, denied, ...), a status, an S3 code and a short reason for the
operator; `transient` is the retry loop's test."""

from __future__ import annotations

import re
from dataclasses import dataclass

from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)

_TRANSIENT_CODES = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "ConditionalRequestConflict",  # AWS: a conditional write raced another; retry
}
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}
# object_store's names for network failures with no HTTP answer at all.
_TRANSIENT_HTTP_KINDS = {"Connect", "Request", "Timeout", "Interrupted", "Decode"}


@dataclass(frozen=True)
class Failure:
    """One failed request, reduced to what decides its handling and its message."""

    kind: str  # transient missing exists no-bucket credentials denied clock unsupported range other
    status: int | None
    code: str | None
    reason: str  # short, for the operator


def classify(exc: BaseException) -> Failure:
    """Read obstore's error (its type, the HTTP status and the S3 error code in its text)."""
    text = str(exc)
    found = re.search(r"status code: (\d{3})", text)
    status = int(found.group(1)) if found else None
    found = re.search(r"<Code>([^<]+)</Code>", text)
    code = found.group(1) if found else None
    found = re.search(r"<Message>([^<]+)</Message>", text)
    message = found.group(1) if found else None
    if status is not None:
        reason = (
            f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        )
    else:
        reason = _network_reason(text)

    def failure(kind: str) -> Failure:
        return Failure(kind, status, code, reason)

    if code == "NoSuchBucket":
        return failure("no-bucket")
    if isinstance(exc, FileNotFoundError) or status == 404:
        return failure("missing")
    if code in _TRANSIENT_CODES or status in (408, 429) or (status or 0) >= 500 and status != 501:
        return failure("transient")
    if code == "RequestTimeTooSkewed":
        return failure("clock")
    if code in _CREDENTIAL_CODES or status == 401 or isinstance(exc, UnauthenticatedError):
        return failure("credentials")
    if status == 403 or isinstance(exc, PermissionDeniedError):
        return failure("denied")
    if isinstance(exc, AlreadyExistsError | PreconditionError) or status == 412:
        return failure("exists")
    if isinstance(exc, NotSupportedError) or status == 501 or code == "NotImplemented":
        return failure("unsupported")
    if status == 416:
        return failure("range")
    if status is None and isinstance(exc, BaseError | OSError):
        kind = re.search(r"HttpError \{\s*kind: (\w+)", text)
        if (kind and kind.group(1) in _TRANSIENT_HTTP_KINDS) or _looks_like_network(text):
            return failure("transient")
    return failure("other")


def _network_reason(text: str) -> str:
    """Short words for a failure that got no HTTP answer, from obstore's debug text."""
    found = re.search(r'message: "([^"]+)"', text)
    if found:
        return found.group(1).lower()  # the OS's words: "connection refused", "... reset by peer"
    kind = re.search(r"HttpError \{\s*kind: (\w+)", text)
    lowered = text.lower()
    if (kind and kind.group(1) == "Timeout") or "timedout" in lowered or "timed out" in lowered:
        return "timed out"
    for phrase in ("dns error", "connection closed", "incomplete message", "unexpected eof"):
        if phrase in lowered:
            return phrase
    words = {
        "Connect": "cannot connect",
        "Interrupted": "connection interrupted",
        "Decode": "answer cut short",
        "Request": "request failed",
    }
    if kind and kind.group(1) in words:
        return words[kind.group(1)]
    return text.splitlines()[0][:200] if text else "unknown error"


def _looks_like_network(text: str) -> bool:
    lowered = text.lower()
    return any(
        phrase in lowered
        for phrase in (
            "error sending request",
            "connection refused",
            "connection reset",
            "broken pipe",
            "timed out",
            "timedout",
            "incomplete message",
            "unexpected eof",
            "error decoding response body",
        )
    )

def transient(exc: BaseException) -> bool:
    return isinstance(exc, BaseError | OSError) and classify(exc).kind == "transient"


class Refused(Exception):
    """A request's expected non-success outcome (missing, exists, range, unsupported)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure

