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

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from cleancut.errors import (
    AccessDenied,
    BackendUnavailable,
    CleancutError,
    ObjectNotFound,
    UsageError,
)
from cleancut.redact import has_userinfo, redact_userinfo

from .base import ObjectInfo
from .retry import RetriesExhausted, RetryPolicy, retry

T = TypeVar("T")

SCHEME = "s3://"
DEFAULT_REGION = "us-east-1"
WRITE_CONCURRENCY = 4  # PUTs in flight per backup: enough to hide latency, not to flood a link
LIST_PAGE = 1000  # objects per list chunk (S3's own page size)
READAHEAD_BYTES = 128 << 20  # memory for objects fetched ahead of their reads
# A pack closes only once a blob takes it past the target size (16 MiB by default, plus
# one chunk of up to 4 MiB), so whole-object read-ahead must cover that, or it never works.
READAHEAD_OBJECT_MAX = 32 << 20  # a larger object is read by ranges, never whole
READAHEAD_WAIT = 120.0  # seconds a read waits for a fetch in flight before reading by range
# Request timeouts. A timeout covers a whole request, upload included, and a stall
# cannot be told from a slow link (a read timeout fires during a long upload), so the
# limit grows with the transfer: small requests fail fast on a hung server, a large
# pack gets the time it needs at MIN_RATE.
QUICK_BYTES = 4 << 20  # transfers up to this size use the quick client
QUICK_TIMEOUT = 120  # seconds: metadata requests and small transfers
MIN_RATE = 128 << 10  # bytes/s a large transfer is allowed to average (about 1 Mbit/s)
UNKNOWN_SIZE_TIMEOUT = 1800  # seconds: whole-object reads, whose size is not known before


# --- where and how --------------------------------------------------------------------


@dataclass(frozen=True)
class S3Location:
    """`s3://BUCKET/PREFIX`: the repository's objects are PREFIX/config, PREFIX/data/..."""

    bucket: str
    prefix: str  # "" or "a/b", without leading or trailing "/"

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not url.startswith(SCHEME):
            raise UsageError(f"not an s3:// location: {redact_userinfo(url)}")
        if has_userinfo(url):
            raise UsageError(
                f"{redact_userinfo(url)}: credentials do not belong in the location; "
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        bucket, _, prefix = url[len(SCHEME) :].partition("/")
        prefix = prefix.strip("/")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}", bucket):
            raise UsageError(f"{url}: {bucket!r} is not a valid bucket name")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise UsageError(f"{url}: the prefix must not contain empty, '.' or '..' parts")
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


@dataclass(frozen=True)
class S3Settings:
    """Endpoint, region and credentials, from the environment as AWS tools read them."""

    region: str
    endpoint: str | None  # None: AWS itself
    access_key_id: str | None  # None: obstore's own chain (web identity, container, instance)
    secret_access_key: str | None
    session_token: str | None
    virtual_hosted: bool | None  # None: decided per bucket (see virtual_hosted_for)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        env = os.environ if environ is None else environ

        def get(*names: str) -> str | None:
            for name in names:
                value = env.get(name, "").strip()
                if value:
                    return value
            return None

        key, secret = get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")
        if bool(key) != bool(secret):
            missing = "AWS_SECRET_ACCESS_KEY" if key else "AWS_ACCESS_KEY_ID"
            raise UsageError(f"{missing} is not set (both access key variables are needed)")
        endpoint = get("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        if endpoint is not None:
            endpoint = endpoint.rstrip("/")
            if not endpoint.startswith(("http://", "https://")):
                raise UsageError(
                    "AWS_ENDPOINT_URL must start with https:// or http://: "
                    + redact_userinfo(endpoint if "://" in endpoint else "://" + endpoint)[3:]
                )
            if has_userinfo(endpoint):
                raise UsageError(
                    f"AWS_ENDPOINT_URL {redact_userinfo(endpoint)}: credentials do not belong "
                    "in the endpoint; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                )
        # Other servers (MinIO, SeaweedFS, most S3-compatible services) want path-style
        # requests: http://host/bucket/key. AWS prefers virtual-hosted style, except for
        # bucket names with dots, which its TLS certificates cannot cover.
        style = get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST")
        virtual_hosted = None if style is None else style.lower() in ("1", "true")
        return cls(
            region=get("AWS_REGION", "AWS_DEFAULT_REGION") or DEFAULT_REGION,
            endpoint=endpoint,
            access_key_id=key,
            secret_access_key=secret,
            session_token=get("AWS_SESSION_TOKEN"),
            virtual_hosted=virtual_hosted,
        )

    def virtual_hosted_for(self, bucket: str) -> bool:
        if self.virtual_hosted is not None:
            return self.virtual_hosted
        return self.endpoint is None and "." not in bucket

    def endpoint_url(self, bucket: str) -> str:
        """The endpoint as an operator would recognise it in an error message."""
        if self.endpoint:
            return self.endpoint
        if self.virtual_hosted_for(bucket):
            return f"https://{bucket}.s3.{self.region}.amazonaws.com"
        return f"https://s3.{self.region}.amazonaws.com"


def make_store(location: S3Location, settings: S3Settings, timeout: float | None = None) -> S3Store:
    """An obstore client; `timeout` bounds each whole request (default QUICK_TIMEOUT)."""
    config: dict[str, Any] = {
        "region": settings.region,
        "virtual_hosted_style_request": settings.virtual_hosted_for(location.bucket),
    }
    if settings.endpoint:
        config["endpoint"] = settings.endpoint
    if settings.access_key_id:
        config["access_key_id"] = settings.access_key_id
        config["secret_access_key"] = settings.secret_access_key
        if settings.session_token:
            config["session_token"] = settings.session_token
    client = {
        "allow_http": bool(settings.endpoint and settings.endpoint.startswith("http://")),
        "connect_timeout": timedelta(seconds=10),
        "timeout": timedelta(seconds=QUICK_TIMEOUT if timeout is None else timeout),
    }
    return S3Store(
        location.bucket,
        prefix=location.prefix or None,
        config=config,  # type: ignore[arg-type]
        client_options=client,  # type: ignore[arg-type]
        # Our loop retries (backend/retry.py); obstore's own would multiply its attempts.
        retry_config={"max_retries": 0},
    )


# --- what went wrong --------------------------------------------------------------------

# S3 error codes that mean "try again later", whatever the status that carried them.
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


def _valid(name: str) -> str:
    """Names are relative and never climb out of the prefix (as in the local backend)."""
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise ValueError(f"invalid object name {name!r}")
    return name


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, BaseError | OSError) and classify(exc).kind == "transient"


class _Refused(Exception):
    """A request's expected non-success outcome (missing, exists, range, unsupported)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


# --- reading ahead --------------------------------------------------------------------


class ReadAhead:
    """Whole objects fetched in the background after a prefetch hint, within a memory budget.

    A restore reads many small ranges of the same pack; against an object store
    each one is a round trip. One whole GET started early turns them into memory
    reads. Hints queue (up to `queue_max` names) in the order given; a fetch
    starts when memory allows, counting each fetch in flight at the largest size
    it may have. An object larger than `object_max` is abandoned as soon as its
    size is known. To make room, only objects already read are evicted (least
    recently read first): evicting one fetched but not yet read would only
    download it twice. A hinted object read before its fetch started leaves the
    queue (it is being read by ranges already). A failed fetch is forgotten; the
    read then falls back to a ranged GET, with its retries.
    """

    def __init__(
        self,
        fetch: Callable[[str, int], bytes | None],
        budget: int = READAHEAD_BYTES,
        object_max: int = READAHEAD_OBJECT_MAX,
        queue_max: int = 256,
    ) -> None:
        self._fetch = fetch
        self._budget = budget
        self._object_max = object_max
        self._queue_max = queue_max
        self._lock = threading.Lock()
        self._queued: dict[str, None] = {}  # hinted, not yet fetching (insertion order)
        self._loading: dict[str, threading.Event] = {}
        self._stale: set[str] = set()  # rewritten or deleted while loading: discard
        self._unread: dict[str, bytes] = {}
        self._read: OrderedDict[str, bytes] = OrderedDict()  # least recently read first
        self._held = 0  # bytes in _unread and _read

    def hint(self, name: str) -> None:
        with self._lock:
            known = (self._queued, self._loading, self._unread, self._read)
            if any(name in group for group in known) or len(self._queued) >= self._queue_max:
                return
            self._queued[name] = None
            starts = self._next_fetches()
        self._start(starts)

    def _next_fetches(self) -> list[tuple[str, threading.Event]]:
        """Move queued names to loading while the budget allows (called under the lock)."""
        starts = []
        while self._queued:
            need = (len(self._loading) + 1) * self._object_max
            while self._held + need > self._budget and self._read:
                self._held -= len(self._read.popitem(last=False)[1])
            if self._held + need > self._budget:
                break
            name = next(iter(self._queued))
            del self._queued[name]
            done = self._loading[name] = threading.Event()
            starts.append((name, done))
        return starts

    def _start(self, starts: list[tuple[str, threading.Event]]) -> None:
        for name, done in starts:
            # A daemon thread: a hint must never keep a finished command from exiting.
            threading.Thread(target=self._load, args=(name, done), daemon=True).start()

    def _load(self, name: str, done: threading.Event) -> None:
        try:
            data = self._fetch(name, self._object_max)
        except Exception:
            data = None
        with self._lock:
            del self._loading[name]
            if name in self._stale:
                self._stale.discard(name)
            elif data is not None:
                self._unread[name] = data
                self._held += len(data)
            starts = self._next_fetches()
        done.set()
        self._start(starts)

    def read(self, name: str) -> bytes | None:
        """The whole object if it is here or arriving (waits for a fetch in flight)."""
        with self._lock:
            self._queued.pop(name, None)
            loading = self._loading.get(name)
        if loading is not None and not loading.wait(READAHEAD_WAIT):
            return None
        with self._lock:
            data = self._unread.pop(name, None)
            if data is not None:
                self._read[name] = data  # now evictable: room for the next fetch
                starts = self._next_fetches()
            else:
                starts = []
                data = self._read.get(name)
                if data is not None:
                    self._read.move_to_end(name)
        self._start(starts)
        return data

    def forget(self, name: str) -> None:
        """The object changed or went: never serve what was fetched of it."""
        with self._lock:
            self._queued.pop(name, None)
            if name in self._loading:
                self._stale.add(name)
            data = self._unread.pop(name, None) or self._read.pop(name, None)
            if data is not None:
                self._held -= len(data)

    @property
    def held(self) -> int:
        """Bytes held now (for tests and diagnostics)."""
        with self._lock:
            return self._held


# --- the backend ------------------------------------------------------------------------


class ObjectStoreBackend:
    """A repository under `s3://BUCKET/PREFIX`; names are "/"-separated, relative to PREFIX.

    One instance is shared by every thread of a command: the obstore client is
    thread-safe (its calls release the GIL and run on obstore's own runtime),
    and the only mutable state here is guarded or written once.
    """

    remote = True  # a network link: the profile's bandwidth cap applies by default
    write_concurrency = WRITE_CONCURRENCY

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
        self.store = store or make_store(location, settings)  # the quick client
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

        Expected outcomes (missing, exists, range, unsupported) come back as _Refused
        for the caller to interpret; everything else becomes a CleancutError.
        """
        try:
            result = retry(fn, _transient, RetryPolicy(budget=0) if self._down else self.policy)
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
                raise _Refused(failure) from None
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
            except _Refused as refused:
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
        except _Refused as refused:
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
        except _Refused as refused:
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
            except _Refused as refused:
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
        except _Refused as refused:
            if refused.failure.kind == "missing":
                return False
            raise self._error(f"look up {name}", refused.failure) from None

    def delete(self, name: str) -> None:
        _valid(name)
        self._readahead.forget(name)
        try:
            self._call(f"delete {name}", lambda: obstore.delete(self.store, name))
        except _Refused as refused:
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
