"""A repository in an S3-compatible object store (AWS S3, MinIO, SeaweedFS, R2, B2, ...).

Built on obstore (Rust's object_store): one client object, safe to share between
the threads that write packs and read blobs, with connection pooling and SigV4
signing. What this module adds is what a backup tool needs on top:

- every object is one whole PUT (never multipart), so it appears whole or not at
  all, and the signed payload hash lets the server reject a damaged upload;
- conditional create (If-None-Match: *) for `put_if_absent`, with a fallback for
  servers that do not implement it;
- our own retry loop (backend/retry.py) with obstore's retries turned off, so the
  time an outage may last is one number the operator sets;
- failures as one line each: unreachable (exit 14), refused credentials or
  missing bucket (exit 15), anything else (exit 1).

Configuration comes from the usual AWS variables; see docs/offsite.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store

from cleancut.errors import AccessDenied, BackendUnavailable, CleancutError, ObjectNotFound

from .base import ObjectInfo
from .readahead import ReadAhead
from .retry import RetriesExhausted, RetryPolicy, retry
from .s3_errors import Failure, Refused, classify, transient
from .s3_settings import S3Location, S3Settings, make_store

T = TypeVar("T")
WRITE_CONCURRENCY = 4  # PUTs in flight per backup: enough to hide latency, not to flood a link
LIST_PAGE = 1000  # objects per list chunk (S3's own page size)
# Request timeouts. A timeout covers a whole request, upload included, and a stall
# cannot be told from a slow link (a read timeout fires during a long upload), so the
# limit grows with the transfer: small requests fail fast on a hung server, a large
# pack gets the time it needs at MIN_RATE.
QUICK_BYTES = 4 << 20  # transfers up to this size use the quick client
QUICK_TIMEOUT = 120  # seconds: metadata requests and small transfers
MIN_RATE = 128 << 10  # bytes/s a large transfer is allowed to average (about 1 Mbit/s)
UNKNOWN_SIZE_TIMEOUT = 1800  # seconds: whole-object reads, whose size is not known before


def _valid(name: str) -> str:
    """Names are relative and never climb out of the prefix (as in the local backend)."""
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise ValueError(f"invalid object name {name!r}")
    return name


class ObjectStoreBackend:
    """A repository under `s3://BUCKET/PREFIX`; names are "/"-separated, relative to PREFIX.

    One instance is shared by every thread of a command: the obstore client is
    thread-safe (its calls release the GIL and run on obstore's own runtime),
    and the only mutable state here is guarded or written once.
    """

    remote = True  # a network link: the profile's bandwidth cap applies by default
    write_concurrency = WRITE_CONCURRENCY
    append_only = False

    def __init__(
        self,
        location: S3Location,
        settings: S3Settings,
        policy: RetryPolicy | None = None,
        store: S3Store | None = None,
    ) -> None:
        self.where = location
        self.settings = settings
        self.location = str(location)
        self.policy = policy or RetryPolicy.from_env()
        self.store = store or make_store(location, settings, QUICK_TIMEOUT)  # the quick client
        self._slow: dict[int, S3Store] = {}  # timeout -> client, for large transfers
        self._slow_lock = threading.Lock()
        # None: not yet known whether the server honours If-None-Match (learned once).
        self._conditional_create: bool | None = None
        # Set when a call spent the whole retry budget: later calls try once each until
        # one succeeds, so a command that meets an outage fails after one budget, not
        # one budget per remaining request (packs in flight, the attempt record, ...).
        self._down = False
        self._readahead = ReadAhead(self._fetch_whole)

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] | None = None) -> ObjectStoreBackend:
        return cls(
            S3Location.parse(url), S3Settings.from_env(environ), RetryPolicy.from_env(environ)
        )

    # -- requests, retries, errors --

    def _client(self, nbytes: int | None) -> S3Store:
        """A client whose request timeout fits a transfer of `nbytes` (None: unknown size).

        Timeouts come in powers of two, so a repository's packs share one client (and
        its connection pool); obstore clients are per timeout, not per request.
        """
        if nbytes is not None and nbytes <= QUICK_BYTES:
            return self.store
        seconds = UNKNOWN_SIZE_TIMEOUT if nbytes is None else QUICK_TIMEOUT + nbytes / MIN_RATE
        seconds = 1 << (int(seconds) - 1).bit_length()
        with self._slow_lock:
            client = self._slow.get(seconds)
            if client is None:
                client = self._slow[seconds] = make_store(self.where, self.settings, seconds)
            return client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one request with retries; turn final failures into one-line errors.

        Expected outcomes (missing, exists, range, unsupported) come back as Refused
        for the caller to interpret; everything else becomes a CleancutError.
        """
        try:
            result = retry(fn, transient, RetryPolicy(budget=0) if self._down else self.policy)
            self._down = False
            return result
        except RetriesExhausted as exc:
            self._down = True
            last = classify(exc.last)
            endpoint = self.settings.endpoint_url(self.where.bucket)
            attempts = f"{exc.attempts} attempt{'s' if exc.attempts != 1 else ''}"
            trouble = f"cannot reach the endpoint {endpoint}"
            if last.status is not None:
                trouble = f"the endpoint {endpoint} kept failing"
            raise BackendUnavailable(
                f"{self.location}: {trouble} after {attempts} over {exc.elapsed:.0f}s "
                f"({last.reason})"
            ) from None
        except (BaseError, OSError) as exc:
            failure = classify(exc)
            if failure.kind in ("missing", "exists", "range", "unsupported"):
                raise Refused(failure) from None
            raise self._error(what, failure) from None

    def _error(self, what: str, failure: Failure) -> CleancutError:
        if failure.kind == "no-bucket":
            return AccessDenied(
                f"s3://{self.where.bucket}: the bucket does not exist "
                f"(create it, or check the name, AWS_REGION and AWS_ENDPOINT_URL)"
            )
        if failure.kind == "credentials":
            return AccessDenied(
                f"{self.location}: access denied ({failure.code or failure.reason}; "
                f"check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            )
        if failure.kind == "clock":
            return AccessDenied(
                f"{self.location}: the server refused the request because this host's clock "
                f"is off by more than 15 minutes (RequestTimeTooSkewed): fix the time (NTP)"
            )
        if failure.kind == "denied":
            return AccessDenied(
                f"{self.location}: access denied while trying to {what} "
                f"({failure.code or failure.reason}; check the credentials and the bucket policy)"
            )
        return CleancutError(f"{self.location}: cannot {what}: {failure.reason}")

    # -- the Backend protocol --

    def put(self, name: str, data: bytes) -> None:
        _valid(name)
        client = self._client(len(data))
        self._call(f"write {name}", lambda: obstore.put(client, name, data, use_multipart=False))
        self._readahead.forget(name)

    def put_if_absent(self, name: str, data: bytes) -> bool:
        _valid(name)
        if self._conditional_create is not False:
            attempts = 0
            client = self._client(len(data))

            def create() -> None:
                nonlocal attempts
                attempts += 1
                obstore.put(client, name, data, mode="create", use_multipart=False)

            try:
                self._call(f"create {name}", create)
                self._conditional_create = True
                return True
            except Refused as refused:
                if refused.failure.kind == "exists":
                    self._conditional_create = True
                    # After a failed attempt the PUT may have landed all the same: if
                    # what is there is exactly ours, this call created it.
                    return attempts > 1 and self._holds(name, data)
                if refused.failure.kind != "unsupported":
                    raise self._error(f"create {name}", refused.failure) from None
                self._conditional_create = False
        # The server does not implement If-None-Match: check, then write. This leaves
        # a race: two writers can both see the name absent and both PUT, the later one
        # winning. Most names are content hashes, so both write the same bytes; the
        # exceptions are `config` (two concurrent inits of one location) and the prune
        # lock (two prunes starting in the same instant). Use a server that supports
        # conditional writes (AWS, R2, MinIO, SeaweedFS do) where that matters.
        if self.exists(name):
            return False
        self.put(name, data)
        return True

    def _holds(self, name: str, data: bytes) -> bool:
        try:
            return self.get(name) == bytes(data)
        except ObjectNotFound:
            return False

    def get(self, name: str) -> bytes:
        _valid(name)
        cached = self._readahead.read(name)
        if cached is not None:
            return cached
        client = self._client(None)  # the size is known only once the answer starts
        try:
            return self._call(f"read {name}", lambda: bytes(obstore.get(client, name).bytes()))
        except Refused as refused:
            raise self._missing_or_error(name, refused.failure) from None

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        _valid(name)
        cached = self._readahead.read(name)
        if cached is not None:
            return cached[offset : offset + length]
        if length <= 0 or offset < 0:
            if offset < 0 or not self.exists(name):
                raise ObjectNotFound(f"object {name} is missing from the repository")
            return b""
        client = self._client(length)
        try:
            return self._call(
                f"read {name}",
                lambda: bytes(obstore.get_range(client, name, start=offset, length=length)),
            )
        except Refused as refused:
            if refused.failure.kind == "range":
                return b""  # the object is shorter than offset: as a file read past its end
            raise self._missing_or_error(name, refused.failure) from None

    def _missing_or_error(self, name: str, failure: Failure) -> CleancutError:
        if failure.kind == "missing":
            return ObjectNotFound(f"object {name} is missing from the repository")
        return self._error(f"read {name}", failure)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # obstore lists by whole path segments ("data/" but not "snapshots/ab"): list the
        # directory part and keep what starts with the full prefix.
        directory = prefix if prefix.endswith("/") else prefix.rpartition("/")[0]
        after: str | None = None  # the last name seen: a retried page resumes after it
        stream: Any = None

        def next_page() -> list[Any] | None:
            nonlocal stream
            if stream is None:
                stream = obstore.list(
                    self.store, directory or None, offset=after, chunk_size=LIST_PAGE
                )
            try:
                return list(next(stream))
            except StopIteration:
                return None
            except BaseException:
                stream = None
                raise

        while True:
            try:
                page = self._call(f"list {prefix or '/'}", next_page)
            except Refused as refused:
                if refused.failure.kind == "missing":
                    return
                raise self._error(f"list {prefix or '/'}", refused.failure) from None
            if page is None:
                return
            for meta in page:
                path = meta["path"]
                after = path
                if path.startswith(prefix) and not path.endswith("/"):
                    yield ObjectInfo(path, meta["size"])

    def exists(self, name: str) -> bool:
        _valid(name)
        try:
            self._call(f"look up {name}", lambda: obstore.head(self.store, name))
            return True
        except Refused as refused:
            if refused.failure.kind == "missing":
                return False
            raise self._error(f"look up {name}", refused.failure) from None

    def delete(self, name: str) -> None:
        _valid(name)
        self._readahead.forget(name)
        try:
            self._call(f"delete {name}", lambda: obstore.delete(self.store, name))
        except Refused as refused:
            if refused.failure.kind != "missing":  # already gone is what was asked
                raise self._error(f"delete {name}", refused.failure) from None

    def prefetch(self, name: str, length: int = 0) -> None:
        self._readahead.hint(name)

    def _fetch_whole(self, name: str, limit: int) -> bytes | None:
        """One attempt at a whole object for the read-ahead; None if it is too large."""
        result = obstore.get(self._client(limit), name)
        if result.meta["size"] > limit:
            return None  # dropping the result abandons the download
        return bytes(result.bytes())
