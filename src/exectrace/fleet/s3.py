"""The S3 client (boto3) and what its errors mean, in one line each.

Configuration is boto3's own: credentials from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE or --profile, the
shared config and credentials files, instance roles; the region from
AWS_REGION / AWS_DEFAULT_REGION or the profile; an S3-compatible server from
--endpoint-url or AWS_ENDPOINT_URL. Messages never include a secret: they
are made from the error's code, not from what the server sent.
"""

from __future__ import annotations

from typing import Any, Optional

from exectrace.errors import ExectraceError

INSTALL_HINT = "pip install 'exectrace[s3]'"

#: Kinds of store errors. Retryable ones are worth trying again later.
UNREACHABLE = "unreachable"
SERVER = "server"
CREDENTIALS = "credentials"
DENIED = "denied"
NOT_FOUND = "not-found"
NO_BUCKET = "no-bucket"
OTHER = "other"
RETRYABLE = frozenset({UNREACHABLE, SERVER})


class StoreError(ExectraceError):
    """A request to the object store failed; `kind` says how."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


def _import_boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise ExectraceError(f"s3:// needs boto3, which is not installed: {INSTALL_HINT}") from None
    return boto3


def make_client(endpoint_url: Optional[str] = None, profile: Optional[str] = None, *,
                attempts: int = 4, read_timeout: float = 60.0, pool: int = 16) -> Any:
    """An S3 client. `attempts` counts botocore's own retries (standard mode:
    exponential backoff with jitter, on throttling, 5xx and connection errors)."""
    boto3 = _import_boto3()
    import botocore.config
    import botocore.exceptions

    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise ExectraceError(f"invalid --endpoint-url {endpoint_url!r}: expected a URL like http://127.0.0.1:9000")
    try:
        session = boto3.session.Session(profile_name=profile)
    except botocore.exceptions.ProfileNotFound:
        raise ExectraceError(f"no AWS profile named {profile!r} (in ~/.aws/config or ~/.aws/credentials)") from None
    config = botocore.config.Config(
        retries={"mode": "standard", "total_max_attempts": max(1, attempts)},
        connect_timeout=5, read_timeout=read_timeout, max_pool_connections=pool,
        s3={"addressing_style": "path"} if (endpoint_url or _env_endpoint()) else None,
    )
    try:
        return session.client("s3", endpoint_url=endpoint_url or None, config=config)
    except ValueError as e:  # a bad AWS_ENDPOINT_URL
        raise ExectraceError(f"cannot use the S3 endpoint: {e}") from None
    except botocore.exceptions.BotoCoreError as e:
        raise ExectraceError(f"cannot make an S3 client: {e}") from None


def _env_endpoint() -> Optional[str]:
    import os

    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def store_error(e: BaseException, where: str) -> StoreError:
    """A botocore/boto3 exception as a StoreError with a one-line message."""
    import botocore.exceptions as bx

    if isinstance(e, StoreError):
        return e
    if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return StoreError(f"no usable AWS credentials for {where} (set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)", CREDENTIALS)
    if isinstance(e, bx.ClientError):
        err = e.response.get("Error", {}) if isinstance(e.response, dict) else {}
        code = str(err.get("Code", ""))
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "InvalidAccessKeyId":
            return StoreError(f"{where}: the store does not know the access key ID "
                              "(InvalidAccessKeyId); check AWS_ACCESS_KEY_ID or the profile", CREDENTIALS)
        if code == "SignatureDoesNotMatch":
            return StoreError(f"{where}: the store rejected the request signature (SignatureDoesNotMatch): "
                              "the secret access key does not match the access key ID", CREDENTIALS)
        if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
            return StoreError(f"{where}: the session token was refused ({code}); renew the credentials",
                              CREDENTIALS)
        if code == "NoSuchBucket":
            return StoreError(f"{where}: no such bucket", NO_BUCKET)
        if code in ("NoSuchKey", "404", "NotFound"):
            return StoreError(f"{where}: no such object", NOT_FOUND)
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            return StoreError(f"{where}: access denied ({code or status}): the credentials may not "
                              "read or write there", DENIED)
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                                     "Throttling", "ThrottlingException", "RequestTimeTooSkewed"):
            return StoreError(f"{where}: the store answered {code or status} (a server error)", SERVER)
        return StoreError(f"{where}: the store refused the request ({code or status})", OTHER)
    if isinstance(e, (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ReadTimeoutError,
                      bx.ConnectTimeoutError, bx.ConnectionError, bx.HTTPClientError)):
        return StoreError(f"{where}: the store is unreachable ({type(e).__name__})", UNREACHABLE)
    if isinstance(e, bx.BotoCoreError):
        return StoreError(f"{where}: {type(e).__name__}", OTHER)
    if isinstance(e, (ConnectionError, TimeoutError)):
        return StoreError(f"{where}: the store is unreachable ({type(e).__name__})", UNREACHABLE)
    return StoreError(f"{where}: {type(e).__name__}: {e}", OTHER)


def call(where: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs), with botocore's errors as StoreError."""
    import botocore.exceptions as bx

    try:
        return fn(*args, **kwargs)
    except (bx.BotoCoreError, bx.ClientError, ConnectionError, TimeoutError) as e:
        raise store_error(e, where) from None


def list_keys(client: Any, bucket: str, prefix: str, *, delimiter: Optional[str] = None,
              start_after: Optional[str] = None) -> tuple[list[tuple[str, int]], list[str]]:
    """([(key, size)], [common prefixes]) under `prefix` (after `start_after`), every page."""
    keys: list[tuple[str, int]] = []
    prefixes: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    if start_after:
        kwargs["StartAfter"] = start_after
    where = f"s3://{bucket}/{prefix}"
    while True:
        page = call(where, client.list_objects_v2, **kwargs)
        keys.extend((o["Key"], int(o.get("Size", 0))) for o in page.get("Contents", []))
        prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return keys, prefixes
        kwargs["ContinuationToken"] = token


def head(client: Any, bucket: str, key: str) -> Optional[dict[str, Any]]:
    """The object's HEAD response, or None if there is no such object."""
    try:
        return call(f"s3://{bucket}/{key}", client.head_object, Bucket=bucket, Key=key)  # type: ignore[no-any-return]
    except StoreError as e:
        if e.kind == NOT_FOUND:
            return None
        raise
