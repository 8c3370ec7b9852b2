"""Envelope encryption of archived objects with Google Tink.

Every object gets its own data key: a Tink streaming AEAD keyset (AES256-GCM-HKDF, 1 MiB
segments) that encrypts the object as it streams. The data key is stored wrapped
(encrypted) by a key-encryption key (KEK), a Tink AES256-GCM keyset from GLV_ARCHIVE_KEYS.
Callers pass the object's id (`object_id.bytes`) as associated data both to the wrap and
to the stream, so a blob or a wrapped key moved to another object fails to decrypt.

Rotation: a new KEK is added to GLV_ARCHIVE_KEYS and made GLV_ARCHIVE_ACTIVE_KEY_ID; new
objects are wrapped by it, old ones still unwrap by their own key id, and `rewrap` moves
a data key to the active KEK without touching the object. Destroying an object's wrapped
key (crypto-shredding) makes it unreadable wherever copies of its ciphertext remain.

No key material is ever logged or put in an exception message.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO, cast

import tink
from tink import aead, proto_keyset_format, secret_key_access, streaming_aead

from glv_archive.settings import ArchiveSettings
from glv_runtime.logs import get_logger
from glv_runtime.secrets import InsecureSecret

log = get_logger(__name__)

aead.register()
streaming_aead.register()

KEYS_VARIABLE = "GLV_ARCHIVE_KEYS"
ACTIVE_KEY_VARIABLE = "GLV_ARCHIVE_ACTIVE_KEY_ID"
_KEK_TEMPLATE = aead.aead_key_templates.AES256_GCM
_DATA_KEY_TEMPLATE = streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB


class KeyUnavailable(Exception):
    """An object's data key cannot be had: its KEK is unknown, it was destroyed, or it does
    not unwrap (corrupted, or wrapped for another object)."""


class DecryptionFailed(Exception):
    """Ciphertext failed authentication while being read: tampered with, truncated, or
    encrypted for another object. Plaintext already returned was authentic."""


@dataclass(frozen=True)
class WrappedKey:
    """An object's data key encrypted by the KEK `key_id` (what the database stores)."""

    key_id: str
    wrapped: bytes


def new_kek() -> tuple[str, str]:
    """A new key-encryption key: (id such as kek-20261201-3f9a1c, base64 Tink keyset)."""
    handle = tink.new_keyset_handle(_KEK_TEMPLATE)
    serialized = proto_keyset_format.serialize(handle, secret_key_access.TOKEN)
    return _new_key_id("kek"), base64.b64encode(serialized).decode("ascii")


def _new_key_id(kind: str) -> str:
    return f"{kind}-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"


def parse_keks(raw_json: str) -> dict[str, aead.Aead]:
    """The KEKs of the GLV_ARCHIVE_KEYS value, JSON {"<key id>": "<base64 keyset>"}.

    Errors name the variable and the key id, never the value: it is key material.
    `from None` keeps the underlying error (a JSONDecodeError holds the whole text) out of
    tracebacks.
    """
    try:
        entries = json.loads(raw_json)
    except ValueError:
        raise ValueError(f'{KEYS_VARIABLE} is not valid JSON: expected {{"<key id>": "<base64 keyset>"}}') from None
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f'{KEYS_VARIABLE} must be a non-empty JSON object {{"<key id>": "<base64 keyset>"}}')
    keks: dict[str, aead.Aead] = {}
    for key_id, value in entries.items():
        if not key_id.strip() or not isinstance(value, str):
            raise ValueError(f"{KEYS_VARIABLE}: each entry must map a non-empty key id to a base64 string")
        try:
            serialized = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{KEYS_VARIABLE}: key {key_id!r} is not valid base64") from None
        try:
            handle = proto_keyset_format.parse(serialized, secret_key_access.TOKEN)
            keks[key_id] = handle.primitive(aead.Aead)
        except tink.TinkError:
            raise ValueError(
                f"{KEYS_VARIABLE}: key {key_id!r} is not a Tink AEAD keyset (make one with `glv-archive keys new`)"
            ) from None
    return keks


class Encryptor:
    """Push-style encryption of one object for an async pipeline: feed plaintext chunks to
    `update`, then call `finish` once; each returns the ciphertext ready so far.

    Tink's encrypting stream writes into a sink drained on every call, so memory stays
    bounded by one segment (1 MiB) plus the chunk being fed.
    """

    def __init__(self, primitive: streaming_aead.StreamingAead, associated_data: bytes) -> None:
        self._sink = _CollectingSink()
        self._stream = primitive.new_encrypting_stream(self._sink, associated_data)
        self._finished = False

    def update(self, plaintext: bytes) -> bytes:
        if self._finished:
            raise ValueError("update after finish")
        self._stream.write(plaintext)
        return self._sink.drain()

    def finish(self) -> bytes:
        """The last ciphertext, with the final segment that marks the end of the object
        (without it, a reader sees a truncated object)."""
        if self._finished:
            raise ValueError("finish called twice")
        self._finished = True
        self._stream.close()  # flushes the last segment and closes the sink
        return self._sink.drain()


class _CollectingSink(io.RawIOBase):
    """Where Tink writes ciphertext; the Encryptor takes it out after each call."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += b
        return len(b)

    def drain(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


class _AuthenticatedReader(io.RawIOBase):
    """Tink's decrypting stream, its errors (all authentication or format failures of the
    ciphertext) turned into DecryptionFailed."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(b))
        except tink.TinkError:
            # Tink's message says only which check failed; keep it out of the chain anyway.
            raise DecryptionFailed(
                "ciphertext failed authentication (tampered, truncated or another object's)"
            ) from None
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


class DataKey:
    """One object's data key (a Tink StreamingAead primitive)."""

    def __init__(self, primitive: streaming_aead.StreamingAead) -> None:
        self._primitive = primitive

    def encryptor(self, associated_data: bytes) -> Encryptor:
        return Encryptor(self._primitive, associated_data)

    def open_plaintext(self, ciphertext: BinaryIO, associated_data: bytes) -> BinaryIO:
        """A readable plaintext stream over `ciphertext` (closing it closes `ciphertext`).

        Each 1 MiB segment is authenticated before its plaintext is returned; a tampered or
        truncated segment, or the wrong associated data, raises DecryptionFailed from
        read() when reached (the wrong associated data or key on the first read).
        """
        try:
            inner = self._primitive.new_decrypting_stream(ciphertext, associated_data)
        except tink.TinkError:
            raise DecryptionFailed("ciphertext cannot be opened") from None
        return cast(BinaryIO, io.BufferedReader(_AuthenticatedReader(inner)))


class Keyring:
    """The KEKs by id, and which one wraps new data keys."""

    def __init__(self, keks: Mapping[str, aead.Aead], active_id: str) -> None:
        if active_id not in keks:
            raise ValueError(f"{ACTIVE_KEY_VARIABLE} {active_id!r} is not a key id in {KEYS_VARIABLE}")
        self._keks = dict(keks)
        self._active_id = active_id

    @property
    def active_id(self) -> str:
        return self._active_id

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keks)

    @classmethod
    def from_settings(cls, settings: ArchiveSettings) -> Keyring:
        """The configured keyring. Production requires both settings; development without
        keys gets an ephemeral KEK for the life of the process."""
        raw = settings.keys.get_secret_value() if settings.keys is not None else ""
        active_id = settings.active_key_id or ""
        if settings.environment == "production":
            if not raw.strip():
                raise InsecureSecret(f"{KEYS_VARIABLE} is not set: make a key with `glv-archive keys new`")
            if not active_id:
                raise InsecureSecret(f"{ACTIVE_KEY_VARIABLE} is not set: name the key of {KEYS_VARIABLE} to use")
        elif not raw.strip():
            key_id = _new_key_id("ephemeral")
            log.warning(
                "archive keys not set: an ephemeral key-encryption key is used; objects written by this "
                "process become unreadable when it ends",
                setting=KEYS_VARIABLE,
                kek=key_id,
            )
            return cls({key_id: tink.new_keyset_handle(_KEK_TEMPLATE).primitive(aead.Aead)}, key_id)
        if not active_id:
            raise ValueError(f"{ACTIVE_KEY_VARIABLE} is not set: name the key of {KEYS_VARIABLE} to use")
        return cls(parse_keks(raw), active_id)

    def new_data_key(self, object_id: uuid.UUID) -> tuple[DataKey, WrappedKey]:
        """A fresh data key for one object, and its wrapping under the active KEK."""
        handle = tink.new_keyset_handle(_DATA_KEY_TEMPLATE)
        return DataKey(handle.primitive(streaming_aead.StreamingAead)), self._wrap(object_id, handle)

    def unwrap(self, object_id: uuid.UUID, wrapped: WrappedKey | None) -> DataKey:
        handle = self._unwrap_handle(object_id, wrapped)
        try:
            return DataKey(handle.primitive(streaming_aead.StreamingAead))
        except tink.TinkError:
            raise KeyUnavailable(f"the data key of object {object_id} is not a streaming AEAD keyset") from None

    def rewrap(self, object_id: uuid.UUID, wrapped: WrappedKey | None) -> WrappedKey:
        """The same data key wrapped by the active KEK (the object itself is unchanged)."""
        return self._wrap(object_id, self._unwrap_handle(object_id, wrapped))

    def is_active(self, wrapped: WrappedKey) -> bool:
        return wrapped.key_id == self._active_id

    def _wrap(self, object_id: uuid.UUID, handle: tink.KeysetHandle) -> WrappedKey:
        blob = proto_keyset_format.serialize_encrypted(
            handle, self._keks[self._active_id], associated_data=object_id.bytes
        )
        return WrappedKey(self._active_id, blob)

    def _unwrap_handle(self, object_id: uuid.UUID, wrapped: WrappedKey | None) -> tink.KeysetHandle:
        if wrapped is None:
            raise KeyUnavailable(f"the data key of object {object_id} was destroyed")
        kek = self._keks.get(wrapped.key_id)
        if kek is None:
            raise KeyUnavailable(
                f"the data key of object {object_id} is wrapped by {wrapped.key_id!r}, not in {KEYS_VARIABLE}"
            )
        try:
            return proto_keyset_format.parse_encrypted(wrapped.wrapped, kek, associated_data=object_id.bytes)
        except tink.TinkError:
            raise KeyUnavailable(
                f"the data key of object {object_id} does not unwrap with {wrapped.key_id!r} "
                "(corrupted, or another object's)"
            ) from None
