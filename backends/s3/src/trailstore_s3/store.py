"""Conditional object I/O on one bucket, through the aiobotocore client that s3fs builds from
the ``storage_options``.

s3fs turns every failure into a generic ``OSError``; here the botocore error is read directly so
that a failed precondition (HTTP 412, or 409 ``ConditionalRequestConflict``) becomes
``ConflictError``, a missing key ``FileNotFoundError``, and everything else a ``StorageError``
naming the trail URL.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import botocore
import botocore.exceptions
import botocore.session
import s3fs
from fsspec.asyn import sync

from trailstore.errors import ConfigurationError, ConflictError, StorageError
from trailstore_s3.layout import TrailLocation

T = TypeVar("T")

#: requests in flight at once for batch reads, writes and deletes
CONCURRENCY = 16
_DELETE_BATCH = 1000
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403"}
)


#: the PutObject parameters the protocol relies on, and the first botocore that knows both
CONDITIONAL_PUT_PARAMETERS = frozenset({"IfMatch", "IfNoneMatch"})
BOTOCORE_FLOOR = "1.35.74"


@functools.cache
def put_object_parameters() -> frozenset[str]:
    """The PutObject parameters the installed botocore knows (its S3 model, read once)."""
    model = botocore.session.get_session().get_service_model("s3")
    return frozenset(model.operation_model("PutObject").input_shape.members)


def require_conditional_puts() -> None:
    """Refuse a botocore too old to send ``If-Match``/``If-None-Match``: it would reject every
    conditional PUT (and the s3fs API would silently drop the condition)."""
    missing = CONDITIONAL_PUT_PARAMETERS - put_object_parameters()
    if missing:
        raise ConfigurationError(
            f"botocore {botocore.__version__} is too old for trailstore-s3: its PutObject "
            f"lacks {', '.join(sorted(missing))}, which conditional writes need; upgrade to "
            f"botocore>={BOTOCORE_FLOOR} (aiobotocore>=2.16.0, s3fs>=2024.12.0)"
        )


class ObjectStore:
    """The objects of one trail location, read and written with explicit preconditions."""

    def __init__(self, location: TrailLocation, storage_options: Mapping[str, Any]) -> None:
        require_conditional_puts()
        self.location = location
        self._fs = s3fs.S3FileSystem(**storage_options)

    # -- single objects ----------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, str]:
        """Body and ETag of an object; ``FileNotFoundError`` if it does not exist."""
        return self._run(lambda: self._get(key), "read", key)

    def put(self, key: str, data: bytes, *, if_match: str | None = None) -> str:
        """Write an object and return its ETag.

        Without ``if_match`` the object must not exist yet (``If-None-Match: *``); with it, the
        current ETag must equal ``if_match``. A failed precondition raises ``ConflictError``.
        """
        return self._run(lambda: self._put(key, data, if_match), "write", key)

    # -- many objects ------------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Bodies of several objects, fetched concurrently; keys that do not exist are left out."""

        async def body(key: str) -> bytes | None:
            try:
                return await self._get_body(key)
            except botocore.exceptions.ClientError as exc:
                error = self._translate(exc, "read", key)
                if isinstance(error, FileNotFoundError):
                    return None
                raise error from exc

        if not keys:
            return {}
        bodies = self._run(lambda: self._gather(body, keys), "read", keys[0])
        return {key: data for key, data in zip(keys, bodies, strict=True) if data is not None}

    def create_many(self, objects: Sequence[tuple[str, bytes]]) -> None:
        """Create several objects concurrently, each with ``If-None-Match: *``.

        An object that already exists with the very same bytes counts as created (a retried
        request whose first attempt succeeded); with other bytes it raises ``ConflictError``.
        """

        async def create(item: tuple[str, bytes]) -> None:
            key, data = item
            try:
                await self._put(key, data, None)
            except botocore.exceptions.ClientError as exc:
                error = self._translate(exc, "write", key)
                if not isinstance(error, ConflictError) or await self._get_body(key) != data:
                    raise error from exc

        if objects:
            self._run(lambda: self._gather(create, objects), "write", objects[0][0])

    def list_keys(self, prefix: str) -> dict[str, int]:
        """Every key under ``prefix`` with its size (one request per 1000 keys)."""
        return self._run(lambda: self._list(prefix), "list", prefix)

    def delete(self, keys: Iterable[str]) -> None:
        """Delete objects (missing ones are fine)."""
        pending = list(keys)
        for start in range(0, len(pending), _DELETE_BATCH):
            batch = pending[start : start + _DELETE_BATCH]
            self._run(lambda: self._delete(batch), "delete", batch[0])  # noqa: B023 - run now

    # -- plumbing ----------------------------------------------------------------------------

    def _run(self, factory: Callable[[], Awaitable[T]], action: str, key: str) -> T:
        try:
            result: T = sync(self._fs.loop, factory)
            return result
        except botocore.exceptions.ClientError as exc:
            raise self._translate(exc, action, key) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise StorageError(
                f"no credentials to {action} {self._url(key)}: pass key/secret in storage_options "
                "or configure the AWS credential chain"
            ) from exc
        except (botocore.exceptions.BotoCoreError, OSError, TimeoutError) as exc:
            if isinstance(exc, FileNotFoundError | StorageError):
                raise
            raise StorageError(
                f"cannot {action} {self._url(key)}: the endpoint is unreachable or refused the "
                f"connection ({exc})"
            ) from exc

    def _url(self, key: str) -> str:
        return f"s3://{self.location.bucket}/{key}"

    def _translate(self, exc: botocore.exceptions.ClientError, action: str, key: str) -> Exception:
        return translate_error(exc, action, self._url(key), self.location)

    async def _client(self) -> Any:
        return await self._fs.set_session()

    async def _get(self, key: str) -> tuple[bytes, str]:
        client = await self._client()
        response = await client.get_object(Bucket=self.location.bucket, Key=key)
        async with response["Body"] as body:
            data = await body.read()
        return bytes(data), str(response["ETag"])

    async def _get_body(self, key: str) -> bytes:
        return (await self._get(key))[0]

    async def _put(self, key: str, data: bytes, if_match: str | None) -> str:
        client = await self._client()
        condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        response = await client.put_object(
            Bucket=self.location.bucket, Key=key, Body=data, **condition
        )
        return str(response["ETag"])

    async def _list(self, prefix: str) -> dict[str, int]:
        client = await self._client()
        sizes: dict[str, int] = {}
        arguments: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix}
        while True:
            response = await client.list_objects_v2(**arguments)
            for item in response.get("Contents", []):
                sizes[item["Key"]] = int(item["Size"])
            if not response.get("IsTruncated"):
                return sizes
            arguments["ContinuationToken"] = response["NextContinuationToken"]

    async def _delete(self, keys: list[str]) -> None:
        client = await self._client()
        objects = [{"Key": key} for key in keys]
        response = await client.delete_objects(
            Bucket=self.location.bucket, Delete={"Objects": objects, "Quiet": True}
        )
        for failure in response.get("Errors", []):
            raise StorageError(
                f"cannot delete {self._url(failure['Key'])}: {failure.get('Code')} "
                f"{failure.get('Message', '')}"
            )

    @staticmethod
    async def _gather(operation: Callable[[Any], Awaitable[T]], items: Sequence[Any]) -> list[T]:
        limit = asyncio.Semaphore(CONCURRENCY)

        async def bounded(item: Any) -> T:
            async with limit:
                return await operation(item)

        return list(await asyncio.gather(*(bounded(item) for item in items)))


def translate_error(
    exc: botocore.exceptions.ClientError, action: str, url: str, location: TrailLocation
) -> Exception:
    """The trailstore exception for an S3 error response to ``action`` on object ``url``."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status == 412 or code in _CONFLICT_CODES:
        return ConflictError(f"precondition failed writing {url} ({code})")
    if code in _MISSING_CODES:
        return FileNotFoundError(f"{url} does not exist")
    if code == "NoSuchBucket":
        return StorageError(f"bucket {location.bucket!r} of trail {location.url} does not exist")
    if code in _DENIED_CODES:
        return StorageError(
            f"access to {url} denied ({code}): check the credentials and permissions in "
            "storage_options"
        )
    return StorageError(f"cannot {action} {url}: {code} {error.get('Message', exc)}")
