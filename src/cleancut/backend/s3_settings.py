"""Where an S3 repository is and how to reach it: `s3://BUCKET/PREFIX`, the settings read
from the usual AWS variables (docs/offsite.md), and the obstore client made from them."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from obstore.store import S3Store

from cleancut.errors import UsageError
from cleancut.redact import has_userinfo, redact_userinfo

SCHEME = "s3://"
DEFAULT_REGION = "us-east-1"


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


def make_store(location: S3Location, settings: S3Settings, timeout: float) -> S3Store:
    """An obstore client; `timeout` bounds each whole request (the backend picks it)."""
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
        "timeout": timedelta(seconds=timeout),
    }
    return S3Store(
        location.bucket,
        prefix=location.prefix or None,
        config=config,  # type: ignore[arg-type]
        client_options=client,  # type: ignore[arg-type]
        # Our loop retries (backend/retry.py); obstore's own would multiply its attempts.
        retry_config={"max_retries": 0},
    )


