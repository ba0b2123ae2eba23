"""The S3-compatible backend: path-style requests over httpx, signed with AWS Signature Version 4.

An object lives at `<endpoint>/<bucket>/<prefix>sha256/<hex>`. A put hashes the file first (sha256 and
MD5, so the server checks the body it receives), skips the upload when HEAD finds the object, and
otherwise sends one PUT with `If-None-Match: *` (412: someone stored it first), streamed from the file.
The bucket must exist; the credentials need GetObject, PutObject, DeleteObject and ListBucket (without
ListBucket, S3 answers a HEAD of a missing object 403, which is reported as refused access).

Signing follows https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx

from sidecar.artifacts.base import (
    READ_CHUNK,
    REF_PREFIX,
    ArtifactError,
    ArtifactMissing,
    ArtifactUnavailable,
    HashCheck,
    StoredObject,
    is_hex_digest,
    ref_hex,
)

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_ERROR_BODY = 64 * 1024
MAX_LIST_BODY = 8 * 1024 * 1024  # one ListObjectsV2 page (at most 1000 keys)
_ERROR_CODE = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)


# -- Signature Version 4 ---------------------------------------------------------------------------
def uri_encode(text: str, *, keep_slash: bool) -> str:
    """RFC 3986 percent-encoding of everything but unreserved characters (and '/' in paths), as SigV4 wants."""
    return quote(text, safe="/-_.~" if keep_slash else "-_.~")


def canonical_request(
    method: str, path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str], payload_sha256: str
) -> tuple[str, str]:
    """(canonical request, signed header list). `path` is already encoded; every header given is signed."""
    names = sorted(name.lower() for name in headers)
    values = {name.lower(): _SPACES.sub(" ", value.strip()) for name, value in headers.items()}
    encoded_query = sorted((uri_encode(k, keep_slash=False), uri_encode(v, keep_slash=False)) for k, v in query)
    signed = ";".join(names)
    lines = [
        method.upper(),
        path or "/",
        "&".join(f"{k}={v}" for k, v in encoded_query),
        "".join(f"{name}:{values[name]}\n" for name in names),
        signed,
        payload_sha256,
    ]
    return "\n".join(lines), signed


def authorization(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    payload_sha256: str,
    *,
    credentials: Credentials,
    region: str,
    service: str = "s3",
) -> str:
    """The Authorization header for a request whose `headers` (host and x-amz-date included) are all signed."""
    amz_date = next(v for k, v in headers.items() if k.lower() == "x-amz-date")
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    request, signed = canonical_request(method, path, query, headers, payload_sha256)
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = _hmac(("AWS4" + credentials.secret_access_key).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def amz_date(unix_time: float) -> str:
    return datetime.fromtimestamp(unix_time, UTC).strftime("%Y%m%dT%H%M%SZ")


def signed_request(
    method: str,
    url: str,
    *,
    credentials: Credentials,
    region: str,
    payload_sha256: str = EMPTY_SHA256,
    headers: Mapping[str, str] | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """Every header of a signed S3 request to `url` (already encoded): host, x-amz-*, authorization."""
    parsed = httpx.URL(url)
    sent = {name.lower(): value for name, value in (headers or {}).items()}
    sent["host"] = parsed.netloc.decode("ascii")
    sent["x-amz-date"] = amz_date(time.time() if now is None else now)
    sent["x-amz-content-sha256"] = payload_sha256
    query = [(k, v) for k, v in parsed.params.multi_items()]
    path = parsed.raw_path.decode("ascii").split("?", 1)[0]
    sent["authorization"] = authorization(
        method, path, query, sent, payload_sha256, credentials=credentials, region=region
    )
    return sent


# -- the store -------------------------------------------------------------------------------------
class S3Store:
    """Objects in one bucket under a prefix; one pooled client, closed by aclose()."""

    name = "s3"

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        bucket: str,
        prefix: str,
        credentials: Credentials,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base = endpoint.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        self._credentials = credentials
        self._clock = clock
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            transport=transport or httpx.AsyncHTTPTransport(limits=limits, retries=0),
            follow_redirects=False,
        )

    def key_of(self, ref: str) -> str:
        return f"{self.prefix}sha256/{ref_hex(ref)}"

    def url_of(self, key: str = "", query: str = "") -> str:
        path = "/" + uri_encode(self.bucket, keep_slash=False) + ("/" + uri_encode(key, keep_slash=True) if key else "")
        return self.base + path + (f"?{query}" if query else "")

    def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        payload_sha256: str = EMPTY_SHA256,
        content: AsyncIterator[bytes] | None = None,
    ) -> httpx.Request:
        signed = signed_request(
            method,
            url,
            credentials=self._credentials,
            region=self.region,
            payload_sha256=payload_sha256,
            headers=headers,
            now=self._clock(),
        )
        return self._client.build_request(method, url, headers=signed, content=content)

    async def _send(self, op: str, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return await self._client.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise ArtifactUnavailable(f"s3 {op} in bucket {self.bucket!r}: timed out") from exc
        except httpx.HTTPError as exc:
            raise ArtifactUnavailable(
                f"s3 {op} in bucket {self.bucket!r}: connection failed ({type(exc).__name__})"
            ) from exc

    async def _exchange(self, op: str, request: httpx.Request, limit: int = MAX_ERROR_BODY) -> tuple[int, bytes]:
        """Send, and read at most `limit` bytes of the answer (error bodies and listings are small)."""
        response = await self._send(op, request, stream=True)
        try:
            return response.status_code, await _read_bounded(response, limit, self.bucket)
        finally:
            await response.aclose()

    def _refused(self, op: str, status: int, body: bytes, ref: str | None = None) -> ArtifactError:
        """The error for a non-2xx answer: 404 missing, 401/403 refused access, 5xx/408/429 retryable."""
        match = _ERROR_CODE.search(body.decode("utf-8", "replace"))
        code = match.group(1) if match else ""
        detail = f"HTTP {status}" + (f" {code}" if code else "")
        if status == 404 and code != "NoSuchBucket" and ref is not None:
            return ArtifactMissing(f"s3 artifact {ref} is missing from bucket {self.bucket!r}")
        if status == 404:
            return ArtifactError(f"s3 {op}: bucket {self.bucket!r} does not exist ({detail})")
        if status in (401, 403):
            return ArtifactError(
                f"s3 {op}: access to bucket {self.bucket!r} refused ({detail}); check the keys and the clock"
            )
        if status >= 500 or status in (408, 409, 429):  # 409: a concurrent conditional write; try again
            return ArtifactUnavailable(f"s3 {op} in bucket {self.bucket!r}: {detail}")
        return ArtifactError(f"s3 {op} in bucket {self.bucket!r}: {detail}")

    async def _head(self, ref: str) -> bool:
        status, _ = await self._exchange("head", self._request("HEAD", self.url_of(self.key_of(ref))))
        if status == 200:
            return True
        if status == 404:
            return False
        raise self._refused("head", status, b"", ref)

    async def put_file(self, path: Path) -> StoredObject:
        try:
            digest, md5, size = await asyncio.to_thread(_hash_file, Path(path))
        except OSError as exc:
            raise ArtifactError(f"s3 put: cannot read the file to store ({exc.strerror})") from exc
        ref = REF_PREFIX + digest
        if await self._head(ref):
            return StoredObject(ref=ref, size=size, created=False)
        headers = {
            "content-length": str(size),
            "content-md5": md5,
            "content-type": "application/octet-stream",
            "if-none-match": "*",
        }
        request = self._request(
            "PUT", self.url_of(self.key_of(ref)), headers=headers, payload_sha256=digest, content=_file_chunks(path)
        )
        status, body = await self._exchange("put", request)
        if status == 412:  # stored by someone else since the HEAD: kept, not rewritten
            return StoredObject(ref=ref, size=size, created=False)
        if status != 200:
            raise self._refused("put", status, body)
        return StoredObject(ref=ref, size=size, created=True)

    async def open(self, ref: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        check = HashCheck(ref)
        request = self._request("GET", self.url_of(self.key_of(ref)), headers={"accept-encoding": "identity"})
        response = await self._send("get", request, stream=True)
        try:
            if response.status_code != 200:
                body = await _read_bounded(response, MAX_ERROR_BODY, self.bucket)
                raise self._refused("get", response.status_code, body, ref)
            try:
                async for chunk in response.aiter_bytes(chunk_size):
                    check.update(chunk)
                    yield chunk
            except httpx.HTTPError as exc:
                raise ArtifactUnavailable(
                    f"s3 get in bucket {self.bucket!r}: {ref} broke off ({type(exc).__name__})"
                ) from exc
        finally:
            await response.aclose()
        check.verify(self.name)

    async def exists(self, ref: str) -> bool:
        return await self._head(ref)

    async def delete(self, ref: str) -> None:
        status, body = await self._exchange("delete", self._request("DELETE", self.url_of(self.key_of(ref))))
        if status not in (200, 204, 404):
            raise self._refused("delete", status, body)

    async def list_refs(self) -> list[tuple[str, float]]:
        """ListObjectsV2 over the prefix, page by page; keys that are not objects of ours are skipped."""
        listed_prefix = f"{self.prefix}sha256/"
        refs: list[tuple[str, float]] = []
        token: str | None = None
        while True:
            params = [("list-type", "2"), ("prefix", listed_prefix)]
            if token:
                params.append(("continuation-token", token))
            query = "&".join(f"{uri_encode(k, keep_slash=False)}={uri_encode(v, keep_slash=False)}" for k, v in params)
            status, body = await self._exchange("list", self._request("GET", self.url_of(query=query)), MAX_LIST_BODY)
            if status != 200:
                raise self._refused("list", status, body[:MAX_ERROR_BODY])
            page, token = self._parse_listing(body, listed_prefix)
            refs.extend(page)
            if not token:
                return refs

    def _parse_listing(self, body: bytes, listed_prefix: str) -> tuple[list[tuple[str, float]], str | None]:
        try:
            root = ET.fromstring(body)
            refs: list[tuple[str, float]] = []
            for item in root.iterfind("{*}Contents"):
                name = (item.findtext("{*}Key") or "").removeprefix(listed_prefix)
                if is_hex_digest(name):
                    stamp = datetime.fromisoformat(item.findtext("{*}LastModified") or "")
                    refs.append((REF_PREFIX + name, stamp.timestamp()))
        except (ET.ParseError, ValueError) as exc:
            raise ArtifactError(f"s3 list in bucket {self.bucket!r}: unreadable answer ({type(exc).__name__})") from exc
        truncated = (root.findtext("{*}IsTruncated") or "").strip() == "true"
        token = root.findtext("{*}NextContinuationToken") if truncated else None
        if truncated and not token:
            raise ArtifactError(f"s3 list in bucket {self.bucket!r}: truncated answer without a continuation token")
        return refs, token

    async def create_bucket(self) -> bool:
        """PUT Bucket (for set-up and tests); False when this account already owns it."""
        status, body = await self._exchange("create bucket", self._request("PUT", self.url_of()))
        if status == 200:
            return True
        if status == 409 and b"BucketAlreadyOwnedByYou" in body:
            return False
        if status == 409:  # the name is taken by another account: no retry will help
            raise ArtifactError(f"s3 create bucket: the name {self.bucket!r} is taken")
        raise self._refused("create bucket", status, body)

    async def aclose(self) -> None:
        await self._client.aclose()


def _hash_file(path: Path) -> tuple[str, str, int]:
    """(sha256 hex, base64 MD5, size): what the PUT declares, so the server checks what it receives."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), base64.b64encode(md5.digest()).decode("ascii"), size


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(Path(path).open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
            yield chunk
    finally:
        handle.close()


async def _read_bounded(response: httpx.Response, limit: int, bucket: str = "") -> bytes:
    """At most `limit` bytes of a streamed answer; more is an ArtifactError (nothing is buffered past it)."""
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise ArtifactError(f"s3 answer from bucket {bucket!r} over {limit} bytes refused")
            parts.append(chunk)
    except httpx.HTTPError as exc:
        raise ArtifactUnavailable(f"s3 answer from bucket {bucket!r} broke off ({type(exc).__name__})") from exc
    return b"".join(parts)
