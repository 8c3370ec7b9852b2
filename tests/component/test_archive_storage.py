"""The archive's object store, for real: a local folder, and an S3 server (moto's, on
127.0.0.1). Only ciphertext is ever stored, a failed upload leaves nothing behind, and
objects far larger than a segment or a multipart part come back intact."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from glv_archive.keys import DecryptionFailed, Keyring, new_kek, parse_keks
from glv_archive.settings import ArchiveSettings
from glv_archive.storage import ObjectStore

MIB = 1024 * 1024
# Repeated through every plaintext: it must never be found in what is stored.
MARKER = b"<<GLV-ARCHIVE-PLAINTEXT-MARKER>>"
BUCKET = "glv-archive-test"


class UpstreamFailed(Exception):
    """What a download that fails its final check raises into the upload."""


async def marked_plaintext(
    total: int, digest: Any, chunk: int = 256 * 1024, fail_after: int | None = None
) -> AsyncIterator[bytes]:
    """`total` bytes of numbered markers in `chunk`-sized pieces, hashed into `digest` as
    they go; raises UpstreamFailed after `fail_after` bytes."""
    sent = 0
    number = 0
    while sent < total:
        if fail_after is not None and sent >= fail_after:
            raise UpstreamFailed("length mismatch")
        piece = bytearray()
        while len(piece) < chunk:
            piece += b"%08d" % number + MARKER
            number += 1
        data = bytes(piece[: min(chunk, total - sent)])
        digest.update(data)
        sent += len(data)
        yield data
        await asyncio.sleep(0)


def sha256_of(chunks: Iterable[bytes], max_chunk: int) -> str:
    """Reads a decrypted object as the HTTP layer would (in a worker thread)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        assert len(chunk) <= max_chunk
        digest.update(chunk)
    return digest.hexdigest()


def contains_marker(chunks: Iterable[bytes]) -> bool:
    """Whether MARKER occurs anywhere, also across chunk boundaries."""
    tail = b""
    for chunk in chunks:
        if MARKER in tail + chunk:
            return True
        tail = chunk[-(len(MARKER) - 1) :]
    return False


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            yield chunk


def files_under(root: Path) -> list[Path]:
    """Every file, staging files (`key#1`) included: the filesystem, not obstore's listing."""
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def keyring() -> Keyring:
    key_id, value = new_kek()
    return Keyring(parse_keks(f'{{"{key_id}": "{value}"}}'), key_id)


# ---------------------------------------------------------------------- local folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
def local(root: Path) -> ObjectStore:
    return ObjectStore.from_settings(
        ArchiveSettings(environment="development", store_url=root.as_uri()), buffer_size=5 * MIB
    )


async def test_local_round_trip_of_a_large_object_stores_only_ciphertext(
    local: ObjectStore, root: Path, keyring: Keyring
) -> None:
    object_id = uuid.uuid4()
    key = f"recordings/{object_id}/video"
    data_key, wrapped = keyring.new_data_key(object_id)
    sent = hashlib.sha256()

    written = await local.store_encrypted(key, marked_plaintext(60 * MIB, sent), data_key.encryptor(object_id.bytes))

    assert written > 60 * MIB
    assert await local.ciphertext_size(key) == written
    assert await local.exists(key)
    assert await local.list_keys("recordings") == [key]
    assert local.uri(key) == (root / key).as_uri()
    assert files_under(root) == [root / key]
    for path in files_under(root):
        assert not contains_marker(file_chunks(path)), path

    chunks = local.open_decrypted(key, keyring.unwrap(object_id, wrapped), object_id.bytes, chunk_size=MIB)
    assert await asyncio.to_thread(sha256_of, chunks, MIB) == sent.hexdigest()


async def test_local_failed_upload_leaves_nothing(local: ObjectStore, root: Path, keyring: Keyring) -> None:
    object_id = uuid.uuid4()
    data_key, _ = keyring.new_data_key(object_id)
    # Past several 5 MiB parts, so that the staging file holds ciphertext when it fails.
    plaintext = marked_plaintext(40 * MIB, hashlib.sha256(), fail_after=17 * MIB)

    with pytest.raises(UpstreamFailed):
        await local.store_encrypted(f"recordings/{object_id}/video", plaintext, data_key.encryptor(object_id.bytes))

    assert files_under(root) == []
    assert await local.list_keys() == []


async def test_local_cancelled_upload_leaves_nothing(local: ObjectStore, root: Path, keyring: Keyring) -> None:
    """A job cancelled at shutdown (or by its timeout) aborts its upload too."""
    object_id = uuid.uuid4()
    data_key, _ = keyring.new_data_key(object_id)
    started = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        async for chunk in marked_plaintext(12 * MIB, hashlib.sha256()):
            yield chunk
        started.set()
        await asyncio.sleep(3600)
        yield b""

    upload = asyncio.create_task(local.store_encrypted("stalled", stalls(), data_key.encryptor(object_id.bytes)))
    await asyncio.wait_for(started.wait(), 30)
    assert any("#" in p.name for p in files_under(root))
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert files_under(root) == []


async def test_local_staging_leftovers_are_removed(local: ObjectStore, root: Path, keyring: Keyring) -> None:
    """What a SIGKILLed write leaves (`<key>#<n>`): invisible to obstore, removed by the next
    write of the key and by the sweep."""
    (root / "rec").mkdir(parents=True)
    for name in ("obj#1", "obj#12", "other#1", "obj#x", "obj2#3"):
        (root / "rec" / name).write_bytes(b"partial ciphertext")
    # obstore hides `#<digits>` files, as it does its own staging files.
    assert await local.list_keys() == ["rec/obj#x"]

    object_id = uuid.uuid4()
    data_key, _ = keyring.new_data_key(object_id)
    await local.store_encrypted("rec/obj", marked_plaintext(1000, hashlib.sha256()), data_key.encryptor(b"ad"))
    # Only this key's staging files: another key's may belong to a write in progress.
    assert [p.name for p in files_under(root)] == ["obj", "obj#x", "obj2#3", "other#1"]

    old = time.time() - 7200
    os.utime(root / "rec" / "other#1", (old, old))
    os.utime(root / "rec" / "obj", (old, old))
    os.utime(root / "rec" / "obj#x", (old, old))
    assert await local.sweep_leftovers(older_than_s=3600) == 1
    # The fresh one (a write in progress, perhaps) and whatever is not a staging file stay.
    assert [p.name for p in files_under(root)] == ["obj", "obj#x", "obj2#3"]
    assert await local.sweep_leftovers(older_than_s=0) == 1
    assert [p.name for p in files_under(root)] == ["obj", "obj#x"]


async def test_local_delete_exists_and_size(local: ObjectStore, keyring: Keyring) -> None:
    assert await local.delete("nowhere/at-all") is False
    assert await local.exists("nowhere/at-all") is False
    assert await local.ciphertext_size("nowhere/at-all") is None
    data_key, _ = keyring.new_data_key(uuid.uuid4())
    written = await local.store_encrypted("a/b", marked_plaintext(5000, hashlib.sha256()), data_key.encryptor(b"ad"))
    assert await local.ciphertext_size("a/b") == written
    assert await local.delete("a/b") is True
    assert await local.delete("a/b") is False
    assert await local.list_keys() == []


async def test_local_tampered_or_missing_object(local: ObjectStore, root: Path, keyring: Keyring) -> None:
    object_id = uuid.uuid4()
    data_key, _ = keyring.new_data_key(object_id)
    await local.store_encrypted("obj", marked_plaintext(3 * MIB, hashlib.sha256()), data_key.encryptor(b"ad"))
    stored = bytearray((root / "obj").read_bytes())
    stored[2 * MIB] ^= 0x01
    (root / "obj").write_bytes(bytes(stored))

    with pytest.raises(DecryptionFailed):
        await asyncio.to_thread(sha256_of, local.open_decrypted("obj", data_key, b"ad"), MIB)
    with pytest.raises(FileNotFoundError):
        await asyncio.to_thread(sha256_of, local.open_decrypted("missing", data_key, b"ad"), MIB)


@pytest.mark.parametrize("url", ["ftp://host/x", "file://relative/path", "s3:///no-bucket", "/var/tmp/archive"])
def test_store_url_must_be_a_file_or_s3_url(url: str) -> None:
    with pytest.raises(ValueError, match="GLV_ARCHIVE_STORE_URL"):
        ObjectStore.from_settings(ArchiveSettings(environment="development", store_url=url))


# ---------------------------------------------------------------------- S3 (moto)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(s3_endpoint: str) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="glv-test",
        aws_secret_access_key="glv-test-secret",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def bucket_store(s3_endpoint: str, s3: Any) -> Iterator[ObjectStore]:
    settings = ArchiveSettings(
        environment="development",
        store_url=f"s3://{BUCKET}/archive",
        s3_endpoint=s3_endpoint,
        s3_region="us-east-1",
        s3_access_key_id="glv-test",
        s3_secret_access_key=SecretStr("glv-test-secret"),
        s3_allow_http=True,
    )
    yield ObjectStore.from_settings(settings, buffer_size=5 * MIB)
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])


def bucket_keys(s3: Any) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def incomplete_uploads(s3: Any) -> list[str]:
    return [upload["Key"] for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


def object_chunks(s3: Any, key: str) -> Iterator[bytes]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
    while chunk := body.read(4 * MIB):
        yield chunk


async def test_s3_round_trip_in_a_multipart_upload(bucket_store: ObjectStore, s3: Any, keyring: Keyring) -> None:
    object_id = uuid.uuid4()
    key = f"recordings/{object_id}/video"
    data_key, wrapped = keyring.new_data_key(object_id)
    sent = hashlib.sha256()

    written = await bucket_store.store_encrypted(
        key, marked_plaintext(25 * MIB, sent), data_key.encryptor(object_id.bytes)
    )

    assert bucket_keys(s3) == [f"archive/{key}"]
    head = s3.head_object(Bucket=BUCKET, Key=f"archive/{key}")
    assert head["ContentLength"] == written == await bucket_store.ciphertext_size(key)
    parts = -(-written // (5 * MIB))
    assert parts > 1 and head["ETag"].strip('"').endswith(f"-{parts}")  # a multipart upload, 5 MiB parts
    assert bucket_store.uri(key) == f"s3://{BUCKET}/archive/{key}"
    assert await bucket_store.list_keys("recordings") == [key]
    assert not contains_marker(object_chunks(s3, f"archive/{key}"))

    chunks = bucket_store.open_decrypted(key, keyring.unwrap(object_id, wrapped), object_id.bytes)
    assert await asyncio.to_thread(sha256_of, chunks, MIB) == sent.hexdigest()


async def test_s3_failed_upload_leaves_nothing(bucket_store: ObjectStore, s3: Any, keyring: Keyring) -> None:
    object_id = uuid.uuid4()
    data_key, _ = keyring.new_data_key(object_id)
    plaintext = marked_plaintext(25 * MIB, hashlib.sha256(), fail_after=12 * MIB)

    with pytest.raises(UpstreamFailed):
        await bucket_store.store_encrypted("recordings/failed", plaintext, data_key.encryptor(object_id.bytes))

    assert bucket_keys(s3) == []
    assert incomplete_uploads(s3) == []  # aborted, not merely left unfinished
    assert await bucket_store.exists("recordings/failed") is False


async def test_s3_delete(bucket_store: ObjectStore, s3: Any, keyring: Keyring) -> None:
    assert await bucket_store.delete("nowhere") is False
    data_key, _ = keyring.new_data_key(uuid.uuid4())
    await bucket_store.store_encrypted("small", marked_plaintext(5000, hashlib.sha256()), data_key.encryptor(b"ad"))
    assert bucket_keys(s3) == ["archive/small"]
    assert await bucket_store.delete("small") is True
    assert await bucket_store.delete("small") is False
    assert bucket_keys(s3) == []
    assert await bucket_store.sweep_leftovers(older_than_s=0) == 0
