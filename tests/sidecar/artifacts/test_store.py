"""The artifact store: the same behaviour tests against the local directory and a real S3 server (SeaweedFS),
SigV4 against AWS's published examples, and the factory's configuration errors."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devnet.seaweedfs import SeaweedS3
from sidecar.artifacts import (
    REF_PREFIX,
    ArtifactCorrupt,
    ArtifactError,
    ArtifactMissing,
    ArtifactStore,
    ArtifactUnavailable,
)
from sidecar.artifacts.factory import open_store
from sidecar.artifacts.local import STALE_TEMP_SECONDS, TEMP_PREFIX, LocalStore
from sidecar.artifacts.s3 import EMPTY_SHA256, Credentials, S3Store, authorization, signed_request, uri_encode
from sidecar.config import load_config
from sidecar.errors import ConfigError

MIB = 1024 * 1024


@dataclass
class Backend:
    """A store under test and a way to change an object's bytes behind its back (same length)."""

    store: ArtifactStore
    corrupt: Callable[[str], Awaitable[None]]
    put_raw: Callable[[str, bytes], Awaitable[None]]  # a foreign object next to the store's own


def flipped(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


async def raw_put(server: SeaweedS3, bucket: str, key: str, body: bytes) -> None:
    """A PUT signed by the devnet's own signer that bypasses the store (no If-None-Match): what a buggy or
    hostile writer could do."""
    await asyncio.to_thread(server.request, "PUT", f"/{bucket}/{uri_encode(key, keep_slash=True)}", body)


async def make_s3_store(server: SeaweedS3, *, secret: str | None = None, bucket: str | None = None) -> S3Store:
    return S3Store(
        endpoint=server.endpoint,
        region="us-east-1",
        bucket=bucket or f"art-{uuid.uuid4().hex[:12]}",
        prefix="servicedesk/",
        credentials=Credentials(server.access_key, secret or server.secret_key),
        timeout=10,
    )


@pytest.fixture(params=["local", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "local":
        local = LocalStore(tmp_path / "artifacts")

        async def corrupt_file(ref: str) -> None:
            path = local.path_of(ref)
            path.write_bytes(flipped(path.read_bytes()))

        async def put_file_raw(name: str, body: bytes) -> None:
            (local.objects / name).write_bytes(body)

        yield Backend(local, corrupt_file, put_file_raw)
        return
    server: SeaweedS3 = request.getfixturevalue("seaweedfs_s3")
    store = await make_s3_store(server)
    assert await store.create_bucket() is True
    assert await store.create_bucket() is False  # already ours: not an error

    async def corrupt_object(ref: str) -> None:
        data = b"".join([chunk async for chunk in store.open(ref)])
        await raw_put(server, store.bucket, store.key_of(ref), flipped(data))

    async def put_object_raw(name: str, body: bytes) -> None:
        await raw_put(server, store.bucket, f"{store.prefix}sha256/{name}", body)

    try:
        yield Backend(store, corrupt_object, put_object_raw)
    finally:
        await store.aclose()


def write_file(tmp_path: Path, data: bytes, name: str = "sealed.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def read_all(store: ArtifactStore, ref: str, chunk_size: int = 65536) -> list[bytes]:
    return [chunk async for chunk in store.open(ref, chunk_size)]


# -- behaviour, both backends ----------------------------------------------------------------------
async def test_put_then_open_streams_the_bytes_under_their_sha256(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(3 * MIB)
    stored = await backend.store.put_file(write_file(tmp_path, data))
    assert stored.ref == REF_PREFIX + hashlib.sha256(data).hexdigest()
    assert (stored.size, stored.created) == (len(data), True)
    assert await backend.store.exists(stored.ref)
    chunks = await read_all(backend.store, stored.ref, chunk_size=65536)
    assert len(chunks) >= 3 * MIB // 65536  # streamed in chunks, not handed over whole
    assert max(len(chunk) for chunk in chunks) <= 65536
    assert b"".join(chunks) == data


async def test_an_empty_object_round_trips(backend: Backend, tmp_path: Path) -> None:
    stored = await backend.store.put_file(write_file(tmp_path, b""))
    assert stored.ref == REF_PREFIX + EMPTY_SHA256
    assert b"".join(await read_all(backend.store, stored.ref)) == b""


async def test_a_second_put_keeps_the_stored_object_and_never_rewrites_it(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    source = write_file(tmp_path, data)
    first = await backend.store.put_file(source)
    await backend.corrupt(first.ref)  # if the second put rewrote the object, it would be whole again
    again = await backend.store.put_file(source)
    assert (again.ref, again.size, again.created) == (first.ref, len(data), False)
    with pytest.raises(ArtifactCorrupt):
        await read_all(backend.store, first.ref)


async def test_a_corrupted_object_raises_after_the_last_chunk(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(MIB + 123)
    stored = await backend.store.put_file(write_file(tmp_path, data))
    await backend.corrupt(stored.ref)
    received = 0
    with pytest.raises(ArtifactCorrupt) as caught:
        async for chunk in backend.store.open(stored.ref):
            received += len(chunk)
    assert received == len(data)  # every byte streamed first: the caller must wait for the end
    assert stored.ref in str(caught.value)
    assert not caught.value.retryable


async def test_a_missing_ref_raises_before_any_chunk(backend: Backend) -> None:
    ref = REF_PREFIX + hashlib.sha256(b"never stored").hexdigest()
    received: list[bytes] = []
    with pytest.raises(ArtifactMissing):
        async for chunk in backend.store.open(ref):
            received.append(chunk)
    assert received == []
    assert not await backend.store.exists(ref)
    await backend.store.delete(ref)  # deleting what is not there is fine


@pytest.mark.parametrize("ref", ["sha256:../../etc/passwd", "sha256:" + "A" * 64, "md5:" + "0" * 32, ""])
async def test_a_malformed_ref_is_refused_without_touching_the_backend(backend: Backend, ref: str) -> None:
    with pytest.raises(ArtifactError) as caught:
        await read_all(backend.store, ref)
    assert type(caught.value) is ArtifactError
    assert "etc/passwd" not in str(caught.value)
    with pytest.raises(ArtifactError):
        await backend.store.exists(ref)
    with pytest.raises(ArtifactError):
        await backend.store.delete(ref)


async def test_list_refs_and_delete(backend: Backend, tmp_path: Path) -> None:
    assert await backend.store.list_refs() == []
    refs = []
    for n in range(3):
        stored = await backend.store.put_file(write_file(tmp_path, f"object {n}".encode(), f"f{n}"))
        refs.append(stored.ref)
    await backend.put_raw("not-an-object", b"foreign")  # other keys under the prefix are not ours
    listed = dict(await backend.store.list_refs())
    assert sorted(listed) == sorted(refs)
    assert all(abs(stamp - time.time()) < 300 for stamp in listed.values())
    await backend.store.delete(refs[0])
    assert sorted(ref for ref, _ in await backend.store.list_refs()) == sorted(refs[1:])
    with pytest.raises(ArtifactMissing):
        await read_all(backend.store, refs[0])
    assert b"".join(await read_all(backend.store, refs[1])) == b"object 1"


async def test_reading_a_file_that_is_not_there_is_not_retryable(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        await backend.store.put_file(tmp_path / "absent.bin")
    assert not caught.value.retryable


# -- local directory only --------------------------------------------------------------------------
async def test_local_objects_are_private_and_no_temp_file_stays(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data" / "artifacts")
    stored = await store.put_file(write_file(tmp_path, b"sealed bytes"))
    assert stat.S_IMODE(store.path_of(stored.ref).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.objects.stat().st_mode) == 0o700
    assert [p.name for p in store.objects.iterdir()] == [stored.ref.removeprefix(REF_PREFIX)]


async def test_local_concurrent_puts_of_the_same_bytes_create_it_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "artifacts")
    sources = [write_file(tmp_path, b"x" * 500_000, f"copy{n}") for n in range(6)]
    results = await asyncio.gather(*(store.put_file(source) for source in sources))
    assert len({r.ref for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert [p.name for p in store.objects.iterdir()] == [results[0].ref.removeprefix(REF_PREFIX)]


async def test_local_list_refs_removes_only_stale_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "artifacts")
    stored = await store.put_file(write_file(tmp_path, b"kept"))
    stale, fresh = store.objects / f"{TEMP_PREFIX}crashed", store.objects / f"{TEMP_PREFIX}writing"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    old = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    assert [ref for ref, _ in await store.list_refs()] == [stored.ref]
    assert not stale.exists() and fresh.exists()


# -- S3 only ---------------------------------------------------------------------------------------
async def test_seaweedfs_honours_if_none_match(seaweedfs_s3: SeaweedS3, tmp_path: Path) -> None:
    """The store relies on it when two writers race past HEAD: the second PUT must get 412, not overwrite."""
    store = await make_s3_store(seaweedfs_s3)
    try:
        await store.create_bucket()
        stored = await store.put_file(write_file(tmp_path, b"first"))
        path = f"/{store.bucket}/{uri_encode(store.key_of(stored.ref), keep_slash=True)}"
        status, _ = await asyncio.to_thread(
            seaweedfs_s3.request, "PUT", path, b"second", headers={"if-none-match": "*"}, ok=(200, 412)
        )
        assert status == 412
        assert b"".join(await read_all(store, stored.ref)) == b"first"
    finally:
        await store.aclose()


async def test_a_wrong_secret_is_refused_access_naming_the_bucket_not_the_secret(
    seaweedfs_s3: SeaweedS3, tmp_path: Path
) -> None:
    good = await make_s3_store(seaweedfs_s3)
    wrong_secret = "wrong-secret-key-0000000000000000"
    bad = await make_s3_store(seaweedfs_s3, secret=wrong_secret, bucket=good.bucket)
    try:
        await good.create_bucket()
        stored = await good.put_file(write_file(tmp_path, b"readable with the right key"))
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: bad.put_file(write_file(tmp_path, b"other bytes", "other")),
            lambda: read_all(bad, stored.ref),
            lambda: bad.exists(stored.ref),
            bad.list_refs,
            lambda: bad.delete(stored.ref),
        ]
        for attempt in attempts:
            with pytest.raises(ArtifactError) as caught:
                await attempt()
            assert type(caught.value) is ArtifactError and not caught.value.retryable
            message = str(caught.value)
            assert good.bucket in message and "refused" in message
            assert wrong_secret not in message and seaweedfs_s3.secret_key not in message
        assert wrong_secret not in repr(bad.__dict__)  # credentials print masked
        assert await good.exists(stored.ref)  # the refused delete deleted nothing
    finally:
        await good.aclose()
        await bad.aclose()


async def test_a_stopped_server_is_unavailable_and_retryable(seaweedfs_s3: SeaweedS3, tmp_path: Path) -> None:
    store = await make_s3_store(seaweedfs_s3)
    try:
        await store.create_bucket()
        stored = await store.put_file(write_file(tmp_path, b"before the outage"))
        seaweedfs_s3.kill()  # the pooled connection to it dies too
        try:
            operations: list[Callable[[], Awaitable[object]]] = [
                lambda: store.put_file(write_file(tmp_path, b"during the outage", "during")),
                lambda: read_all(store, stored.ref),
                lambda: store.exists(stored.ref),
                store.list_refs,
                lambda: store.delete(stored.ref),
            ]
            for operation in operations:
                with pytest.raises(ArtifactUnavailable) as caught:
                    await operation()
                assert caught.value.retryable and store.bucket in str(caught.value)
        finally:
            seaweedfs_s3.start()
        assert b"".join(await read_all(store, stored.ref)) == b"before the outage"
    finally:
        await store.aclose()


async def test_a_hung_server_times_out_as_unavailable(seaweedfs_s3: SeaweedS3, tmp_path: Path) -> None:
    store = await make_s3_store(seaweedfs_s3)
    hasty = S3Store(
        endpoint=seaweedfs_s3.endpoint,
        region="us-east-1",
        bucket=store.bucket,
        prefix="servicedesk/",
        credentials=Credentials(seaweedfs_s3.access_key, seaweedfs_s3.secret_key),
        timeout=0.5,
    )
    try:
        await store.create_bucket()
        stored = await store.put_file(write_file(tmp_path, b"before the hang"))
        seaweedfs_s3.pause()
        try:
            for operation in (lambda: read_all(hasty, stored.ref), lambda: hasty.exists(stored.ref)):
                with pytest.raises(ArtifactUnavailable) as caught:
                    await operation()
                assert caught.value.retryable and "timed out" in str(caught.value)
        finally:
            seaweedfs_s3.resume()
        assert b"".join(await read_all(hasty, stored.ref)) == b"before the hang"
    finally:
        await store.aclose()
        await hasty.aclose()


async def test_a_missing_bucket_is_a_configuration_error_not_a_missing_object(
    seaweedfs_s3: SeaweedS3, tmp_path: Path
) -> None:
    store = await make_s3_store(seaweedfs_s3)  # bucket never created
    try:
        with pytest.raises(ArtifactError) as caught:
            await store.put_file(write_file(tmp_path, b"nowhere to go"))
        assert type(caught.value) is ArtifactError and "does not exist" in str(caught.value)
        with pytest.raises(ArtifactError) as listed:
            await store.list_refs()
        assert type(listed.value) is ArtifactError
    finally:
        await store.aclose()


# -- SigV4 against AWS's published examples ------------------------------------------------------------
# https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html ("Examples: Signature
# Calculations"): GET Object, PUT Object and GET Bucket (list objects), with these example credentials.
AWS_EXAMPLE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
SCOPE = "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"


def test_sigv4_aws_example_get_object() -> None:
    headers = {
        "Host": "examplebucket.s3.amazonaws.com",
        "Range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
    }
    assert authorization(
        "GET", "/test.txt", [], headers, EMPTY_SHA256, credentials=AWS_EXAMPLE, region="us-east-1"
    ) == (
        f"AWS4-HMAC-SHA256 {SCOPE}, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_sigv4_aws_example_put_object() -> None:
    payload = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    assert payload == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    headers = {
        "Host": "examplebucket.s3.amazonaws.com",
        "Date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": payload,
    }
    path = uri_encode("/test$file.text", keep_slash=True)
    assert path == "/test%24file.text"
    assert authorization("PUT", path, [], headers, payload, credentials=AWS_EXAMPLE, region="us-east-1") == (
        f"AWS4-HMAC-SHA256 {SCOPE}, SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
        "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    )


def test_sigv4_aws_example_list_objects() -> None:
    headers = {
        "Host": "examplebucket.s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-content-sha256": EMPTY_SHA256,
    }
    query = [("max-keys", "2"), ("prefix", "J")]
    assert authorization("GET", "/", query, headers, EMPTY_SHA256, credentials=AWS_EXAMPLE, region="us-east-1") == (
        f"AWS4-HMAC-SHA256 {SCOPE}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


def test_sigv4_aws_test_suite_sorts_query_parameters() -> None:
    """AWS's Signature Version 4 test suite, get-vanilla-query-order-key-case (service "service")."""
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
    query = [("Param2", "value2"), ("Param1", "value1")]
    assert authorization(
        "GET", "/", query, headers, EMPTY_SHA256, credentials=credentials, region="us-east-1", service="service"
    ) == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
    )


def test_signed_request_signs_what_httpx_sends() -> None:
    url = "http://127.0.0.1:8333/bucket/servicedesk/sha256/" + "a" * 64 + "?list-type=2&prefix=a%2Fb"
    headers = signed_request("GET", url, credentials=AWS_EXAMPLE, region="us-east-1", now=1369353600.0)
    assert headers["host"] == "127.0.0.1:8333" and headers["x-amz-date"] == "20130524T000000Z"
    request = httpx.Request("GET", url, headers=headers)
    assert request.headers["host"] == headers["host"]
    assert request.url.raw_path == b"/bucket/servicedesk/sha256/" + b"a" * 64 + b"?list-type=2&prefix=a%2Fb"
    assert AWS_EXAMPLE.secret_access_key not in repr(AWS_EXAMPLE)


# -- the factory ---------------------------------------------------------------------------------------
S3_ENV = {
    "VIRTENGINE_SERVICEDESK_S3_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0000",
    "VIRTENGINE_SERVICEDESK_S3_SECRET_ACCESS_KEY": "factory-secret-value-do-not-print",
}


def config_file(tmp_path: Path, artifacts: str, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"servicedesk:\n  artifacts:\n{artifacts}{extra}")
    return path


async def test_factory_builds_the_local_store_by_default(tmp_path: Path) -> None:
    config = load_config(environ={})
    store = open_store(config.settings, config.secrets, config.sources)
    assert isinstance(store, LocalStore) and store.root == Path("./data/artifacts")


async def test_factory_builds_the_s3_store(tmp_path: Path) -> None:
    s3 = (
        "    backend: s3\n    s3:\n      endpoint: https://s3.example.test\n      bucket: tickets\n"
        "      region: eu-central-1\n      prefix: sd/\n"
    )
    config = load_config(config_file(tmp_path, s3), environ=S3_ENV)
    store = open_store(config.settings, config.secrets, config.sources)
    try:
        assert isinstance(store, S3Store)
        assert (store.bucket, store.region, store.prefix) == ("tickets", "eu-central-1", "sd/")
        assert (
            store.url_of(store.key_of("sha256:" + "0" * 64)) == "https://s3.example.test/tickets/sd/sha256/" + "0" * 64
        )
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("s3", "env", "key", "problem"),
    [
        ("      bucket: tickets\n", S3_ENV, "artifacts.s3.endpoint", "is required"),
        ("      endpoint: https://s3.example.test\n", S3_ENV, "artifacts.s3.bucket", "is required"),
        (
            "      endpoint: https://s3.example.test\n      bucket: Bad_Name\n",
            S3_ENV,
            "artifacts.s3.bucket",
            "bucket name",
        ),
        ("      endpoint: http://s3.example.test\n      bucket: tickets\n", S3_ENV, "artifacts.s3.endpoint", "https"),
        (
            "      endpoint: https://s3.example.test\n      bucket: tickets\n",
            {k: v for k, v in S3_ENV.items() if "SECRET" not in k},
            "artifacts.backend",
            "s3_secret_access_key is missing",
        ),
        (
            "      endpoint: https://s3.example.test\n      bucket: tickets\n",
            {k: v for k, v in S3_ENV.items() if "SECRET" in k},
            "artifacts.backend",
            "s3_access_key_id is missing",
        ),
    ],
)
def test_an_incomplete_s3_backend_is_refused_when_the_config_loads_naming_the_key(
    tmp_path: Path, s3: str, env: dict[str, str], key: str, problem: str
) -> None:
    """`config check` and the start both load the config: neither gets past an S3 backend it cannot open."""
    with pytest.raises(ConfigError) as caught:
        load_config(config_file(tmp_path, f"    backend: s3\n    s3:\n{s3}"), environ=env)
    assert caught.value.path == key and problem in caught.value.problem
    assert str(tmp_path) in caught.value.source or caught.value.source == "default"
    assert S3_ENV["VIRTENGINE_SERVICEDESK_S3_SECRET_ACCESS_KEY"] not in str(caught.value)


async def test_factory_allows_http_for_local_development(tmp_path: Path) -> None:
    s3 = "    backend: s3\n    s3:\n      endpoint: http://127.0.0.1:8333\n      bucket: tickets\n"
    config = load_config(config_file(tmp_path, s3, "  sync:\n    allow_insecure_http: true\n"), environ=S3_ENV)
    store = open_store(config.settings, config.secrets, config.sources)
    try:
        assert isinstance(store, S3Store)
    finally:
        await store.aclose()
