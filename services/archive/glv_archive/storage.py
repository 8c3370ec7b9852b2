"""Where the archive keeps its ciphertext: one obstore interface over a local folder or an
S3-compatible bucket (AWS, MinIO, Ceph...).

Only ciphertext reaches the store: `store_encrypted` encrypts as it streams, and
`open_decrypted` decrypts as it reads, both in bounded memory (one encryption segment and
one chunk, plus the writer's multipart buffer), whatever the size of the object.

A write is all or nothing: an upload that fails (the plaintext source raises, the store
errs) is aborted, and no object appears at its key. What a killed process leaves behind:

- a local store: the writer's staging file `<key>#<n>`, which obstore never lists or
  reads; the next write of the same key removes it, and `sweep_leftovers` removes old ones;
- S3: an incomplete multipart upload, invisible to reads and listings but billed; the
  bucket needs a lifecycle rule (AbortIncompleteMultipartUpload, e.g. after 1 day).

Keys and store paths are ours (ids, not names); nothing here logs object contents.
"""

from __future__ import annotations

import asyncio
import glob
import io
import re
import time
from collections.abc import AsyncIterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast
from urllib.parse import unquote, urlsplit

import obstore
from obstore.store import LocalStore, S3Store

from glv_archive.keys import DataKey, Encryptor
from glv_archive.settings import ArchiveSettings
from glv_runtime.logs import get_logger

if TYPE_CHECKING:
    from obstore import ReadableFile
    from obstore.store import S3Config

log = get_logger(__name__)

MIB = 1024 * 1024
STORE_URL_VARIABLE = "GLV_ARCHIVE_STORE_URL"
# Each part of a multipart upload; S3 needs at least 5 MiB per part (but the last).
DEFAULT_BUFFER_SIZE = 8 * MIB
# Parts in flight at once: memory is about buffer_size × (this + 1) per upload.
UPLOAD_CONCURRENCY = 2
# obstore's local staging file for an unfinished write of <key>.
_STAGING = re.compile(r"#\d+$")


class ObjectStore:
    """The archive's object store. `root` is the local folder (None for S3)."""

    def __init__(
        self,
        store: LocalStore | S3Store,
        *,
        base_uri: str,
        root: Path | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        self._store = store
        self._base_uri = base_uri.rstrip("/")
        self._root = root
        self._buffer_size = buffer_size

    @classmethod
    def from_settings(cls, settings: ArchiveSettings, *, buffer_size: int = DEFAULT_BUFFER_SIZE) -> ObjectStore:
        """The store of GLV_ARCHIVE_STORE_URL: file:///abs/path or s3://bucket[/prefix]."""
        url = urlsplit(settings.store_url)
        if url.scheme == "file":
            if url.netloc not in ("", "localhost") or not url.path.startswith("/"):
                raise ValueError(f"{STORE_URL_VARIABLE} must be file:///<absolute path> for a local folder")
            root = Path(unquote(url.path)).resolve()
            return cls(LocalStore(root, mkdir=True), base_uri=root.as_uri(), root=root, buffer_size=buffer_size)
        if url.scheme == "s3":
            if not url.netloc or url.query or url.fragment:
                raise ValueError(f"{STORE_URL_VARIABLE} must be s3://<bucket>[/<prefix>]")
            store = _s3_store(settings, url.netloc, url.path.strip("/"))
            return cls(store, base_uri=settings.store_url, buffer_size=buffer_size)
        raise ValueError(f"{STORE_URL_VARIABLE} must start with file:/// or s3:// (got scheme {url.scheme!r})")

    def uri(self, key: str) -> str:
        """Where the object is, for its metadata and for operators."""
        return f"{self._base_uri}/{key}"

    # ------------------------------------------------------------------ writing

    async def store_encrypted(self, key: str, plaintext: AsyncIterable[bytes], encryptor: Encryptor) -> int:
        """Encrypts `plaintext` as it arrives into the object `key`; the ciphertext bytes
        written. When `plaintext` (or the store) raises, the upload is aborted and the
        exception propagates: nothing new is left at `key`."""
        if self._root is not None:
            await asyncio.to_thread(self._remove_staging, key)
        written = 0
        # The writer's context aborts the upload on any exception, cancellation included.
        async with obstore.open_writer_async(
            self._store, key, buffer_size=self._buffer_size, max_concurrency=UPLOAD_CONCURRENCY
        ) as writer:
            async for chunk in plaintext:
                ciphertext = encryptor.update(chunk)
                if ciphertext:
                    written += await writer.write(ciphertext)
            written += await writer.write(encryptor.finish())
        return written

    def _remove_staging(self, key: str) -> None:
        """Staging files a killed write of `key` left (obstore lists none of them). A key is
        written by one job at a time (it holds the job's lease), so none is in progress."""
        assert self._root is not None
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError("an object key is a relative path without '..'")
        target = self._root / key
        staging = re.compile(re.escape(target.name) + r"#\d+")
        if target.parent.is_dir():
            for leftover in target.parent.glob(f"{glob.escape(target.name)}#*"):
                if staging.fullmatch(leftover.name):
                    leftover.unlink(missing_ok=True)

    async def sweep_leftovers(self, older_than_s: float) -> int:
        """Removes staging files of killed writes older than `older_than_s` (local store;
        0 for S3, whose incomplete uploads only a lifecycle rule removes). How many."""
        if self._root is None:
            return 0
        removed = await asyncio.to_thread(_sweep, self._root, time.time() - older_than_s)
        if removed:
            log.info("removed staging files of unfinished writes", count=removed)
        return removed

    # ------------------------------------------------------------------ reading

    def open_decrypted(
        self, key: str, data_key: DataKey, associated_data: bytes, chunk_size: int = MIB
    ) -> Iterator[bytes]:
        """The plaintext of `key` in chunks (a sync generator, for a thread pool). Reads
        ranges of the object as it goes, never the whole of it.

        Raises FileNotFoundError when the object is not there (at the first chunk) and
        glv_archive.keys.DecryptionFailed when a segment fails authentication (when it is
        reached: the chunks before it were authentic)."""
        reader = obstore.open_reader(self._store, key, buffer_size=chunk_size)
        with data_key.open_plaintext(cast(BinaryIO, _ObjectReader(reader)), associated_data) as plaintext:
            while chunk := plaintext.read(chunk_size):
                yield chunk

    # ------------------------------------------------------------------ metadata

    async def exists(self, key: str) -> bool:
        return await self.ciphertext_size(key) is not None

    async def ciphertext_size(self, key: str) -> int | None:
        try:
            meta = await obstore.head_async(self._store, key)
        except FileNotFoundError:
            return None
        return meta["size"]

    async def delete(self, key: str) -> bool:
        """Deletes the object; False when it was not there (S3 deletes say nothing of that,
        hence the HEAD first)."""
        if not await self.exists(key):
            return False
        try:
            await obstore.delete_async(self._store, key)
        except FileNotFoundError:
            return False  # deleted meanwhile
        return True

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Keys under `prefix`, which matches whole path segments ("a/b" finds "a/b/c",
        not "a/bc"). Staging files are never listed."""
        keys: list[str] = []
        async for batch in obstore.list(self._store, prefix=prefix or None):
            keys.extend(meta["path"] for meta in batch)
        return keys


def _s3_store(settings: ArchiveSettings, bucket: str, prefix: str) -> S3Store:
    """An S3Store; settings left unset fall back to the AWS_* environment (and instance
    credentials), as obstore does."""
    if (settings.s3_access_key_id is None) != (settings.s3_secret_access_key is None):
        raise ValueError(
            "GLV_ARCHIVE_S3_ACCESS_KEY_ID and GLV_ARCHIVE_S3_SECRET_ACCESS_KEY are set together or not at all"
        )
    config: S3Config = {"region": settings.s3_region}
    if settings.s3_endpoint:
        config["endpoint"] = settings.s3_endpoint
    if settings.s3_access_key_id is not None and settings.s3_secret_access_key is not None:
        config["access_key_id"] = settings.s3_access_key_id
        config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    return S3Store(bucket, prefix=prefix or None, config=config, client_options={"allow_http": settings.s3_allow_http})


def _sweep(root: Path, cutoff: float) -> int:
    removed = 0
    for path in root.rglob("*#*"):
        try:
            if _STAGING.search(path.name) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass  # finished or removed meanwhile
    return removed


class _ObjectReader(io.RawIOBase):
    """obstore's ReadableFile (ranged reads, one buffer) as the binary file Tink reads."""

    def __init__(self, file: ReadableFile) -> None:
        super().__init__()
        self._file = file

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._file.read(len(b))
        n = len(data)
        memoryview(b)[:n] = memoryview(data)
        return n

    def close(self) -> None:
        self._file.close()
        super().close()
