"""The archive's envelope encryption: each object's data key encrypts it in segments and is
wrapped by a key-encryption key; both are bound to the object's id, and KEKs rotate."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import tink
from pydantic import SecretStr
from structlog.testing import capture_logs
from tink import proto_keyset_format, secret_key_access, streaming_aead

from glv_archive.keys import (
    DataKey,
    DecryptionFailed,
    Keyring,
    KeyUnavailable,
    WrappedKey,
    new_kek,
    parse_keks,
)
from glv_archive.settings import ArchiveSettings
from glv_runtime.secrets import InsecureSecret

MIB = 1024 * 1024


def keyring(*ids_and_values: tuple[str, str], active: str) -> Keyring:
    return Keyring(parse_keks(json.dumps(dict(ids_and_values))), active)


def settings(**changes: Any) -> ArchiveSettings:
    values: dict[str, Any] = {"environment": "production", "keys": None, "active_key_id": None}
    return ArchiveSettings(**(values | changes))


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def encrypt(data_key: DataKey, plaintext: bytes, associated_data: bytes, chunk: int = 100_000) -> bytes:
    encryptor = data_key.encryptor(associated_data)
    out = [encryptor.update(piece) for piece in pieces(plaintext, chunk)]
    return b"".join([*out, encryptor.finish()])


def decrypt(data_key: DataKey, ciphertext: bytes, associated_data: bytes) -> bytes:
    with data_key.open_plaintext(io.BytesIO(ciphertext), associated_data) as plaintext:
        return b"".join(iter(lambda: plaintext.read(256 * 1024), b""))


@pytest.fixture(scope="module")
def plaintext() -> bytes:
    # 3.5 MB of varied bytes: four 1 MiB segments, the last one short.
    block = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(32 * 1024))
    return (block * 4)[: 3 * MIB + MIB // 2]


def test_new_kek_id_and_value() -> None:
    key_id, value = new_kek()
    assert key_id.startswith("kek-") and len(key_id) == len("kek-20261201-3f9a1c")
    assert key_id[4:12].isdigit() and int(key_id[13:], 16) >= 0
    assert set(parse_keks(json.dumps({key_id: value}))) == {key_id}
    assert new_kek() != new_kek()


def test_round_trip_of_many_segments(plaintext: bytes) -> None:
    key_id, value = new_kek()
    ring = keyring((key_id, value), active=key_id)
    object_id = uuid.uuid4()
    data_key, wrapped = ring.new_data_key(object_id)
    assert wrapped.key_id == key_id and ring.is_active(wrapped)

    encryptor = data_key.encryptor(object_id.bytes)
    ready = [encryptor.update(piece) for piece in pieces(plaintext, 300_000)]
    # Ciphertext comes out while the plaintext goes in: little more than a segment is held.
    assert sum(len(r) for r in ready) > len(plaintext) - 2 * MIB
    assert max(len(r) for r in ready) < 2 * MIB
    ciphertext = b"".join([*ready, encryptor.finish()])
    assert len(ciphertext) > len(plaintext)
    assert plaintext[:4096] not in ciphertext

    # Read back through a key unwrapped from what the database would hold.
    assert decrypt(ring.unwrap(object_id, wrapped), ciphertext, object_id.bytes) == plaintext


def test_empty_object_round_trip() -> None:
    key_id, value = new_kek()
    ring = keyring((key_id, value), active=key_id)
    object_id = uuid.uuid4()
    data_key, _ = ring.new_data_key(object_id)
    assert decrypt(data_key, encrypt(data_key, b"", object_id.bytes), object_id.bytes) == b""


def test_encryptor_is_finished_once() -> None:
    key_id, value = new_kek()
    data_key, _ = keyring((key_id, value), active=key_id).new_data_key(uuid.uuid4())
    encryptor = data_key.encryptor(b"ad")
    encryptor.finish()
    with pytest.raises(ValueError, match="after finish"):
        encryptor.update(b"more")
    with pytest.raises(ValueError, match="twice"):
        encryptor.finish()


@pytest.fixture(scope="module")
def sealed(plaintext: bytes) -> tuple[Keyring, uuid.UUID, WrappedKey, bytes]:
    key_id, value = new_kek()
    ring = keyring((key_id, value), active=key_id)
    object_id = uuid.uuid4()
    data_key, wrapped = ring.new_data_key(object_id)
    return ring, object_id, wrapped, encrypt(data_key, plaintext, object_id.bytes)


@pytest.mark.parametrize("position", [10, 5 * MIB // 2, -1])
def test_a_flipped_ciphertext_byte_fails(sealed: tuple[Keyring, uuid.UUID, WrappedKey, bytes], position: int) -> None:
    """In the header, in a middle segment, in the tag of the last: each is caught."""
    ring, object_id, wrapped, ciphertext = sealed
    tampered = bytearray(ciphertext)
    tampered[position] ^= 0x01
    with pytest.raises(DecryptionFailed):
        decrypt(ring.unwrap(object_id, wrapped), bytes(tampered), object_id.bytes)


def test_plaintext_before_a_tampered_segment_is_authentic(
    sealed: tuple[Keyring, uuid.UUID, WrappedKey, bytes], plaintext: bytes
) -> None:
    ring, object_id, wrapped, ciphertext = sealed
    tampered = bytearray(ciphertext)
    tampered[5 * MIB // 2] ^= 0x01
    received = bytearray()
    with (
        pytest.raises(DecryptionFailed),
        ring.unwrap(object_id, wrapped).open_plaintext(io.BytesIO(bytes(tampered)), object_id.bytes) as stream,
    ):
        while chunk := stream.read(64 * 1024):
            received += chunk
    assert 0 < len(received) < 3 * MIB
    assert plaintext.startswith(received)


def test_truncated_ciphertext_fails(sealed: tuple[Keyring, uuid.UUID, WrappedKey, bytes]) -> None:
    ring, object_id, wrapped, ciphertext = sealed
    with pytest.raises(DecryptionFailed):
        decrypt(ring.unwrap(object_id, wrapped), ciphertext[: 2 * MIB], object_id.bytes)


def test_another_objects_associated_data_fails(sealed: tuple[Keyring, uuid.UUID, WrappedKey, bytes]) -> None:
    """A blob moved under another object's record does not decrypt."""
    ring, object_id, wrapped, ciphertext = sealed
    with pytest.raises(DecryptionFailed):
        decrypt(ring.unwrap(object_id, wrapped), ciphertext, uuid.uuid4().bytes)


def test_a_wrapped_key_moved_to_another_object_does_not_unwrap(
    sealed: tuple[Keyring, uuid.UUID, WrappedKey, bytes],
) -> None:
    ring, _, wrapped, _ = sealed
    with pytest.raises(KeyUnavailable, match="does not unwrap") as caught:
        ring.unwrap(uuid.uuid4(), wrapped)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_corrupted_wrapped_key_is_unavailable(sealed: tuple[Keyring, uuid.UUID, WrappedKey, bytes]) -> None:
    ring, object_id, wrapped, _ = sealed
    corrupted = bytearray(wrapped.wrapped)
    corrupted[-1] ^= 0x01
    with pytest.raises(KeyUnavailable):
        ring.unwrap(object_id, WrappedKey(wrapped.key_id, bytes(corrupted)))


def test_unknown_or_destroyed_key_is_unavailable(sealed: tuple[Keyring, uuid.UUID, WrappedKey, bytes]) -> None:
    ring, object_id, wrapped, _ = sealed
    with pytest.raises(KeyUnavailable, match=r"kek-gone.*not in GLV_ARCHIVE_KEYS"):
        ring.unwrap(object_id, WrappedKey("kek-gone", wrapped.wrapped))
    with pytest.raises(KeyUnavailable, match="destroyed"):
        ring.unwrap(object_id, None)
    with pytest.raises(KeyUnavailable, match="destroyed"):
        ring.rewrap(object_id, None)


def test_rotation(plaintext: bytes) -> None:
    a, b = new_kek(), new_kek()
    object_id = uuid.uuid4()
    data_key, wrapped_a = keyring(a, active=a[0]).new_data_key(object_id)
    ciphertext = encrypt(data_key, plaintext, object_id.bytes)

    # B becomes active; A stays listed until every object has moved.
    both = keyring(a, b, active=b[0])
    assert not both.is_active(wrapped_a)
    assert decrypt(both.unwrap(object_id, wrapped_a), ciphertext, object_id.bytes) == plaintext
    wrapped_b = both.rewrap(object_id, wrapped_a)
    assert wrapped_b.key_id == b[0] and both.is_active(wrapped_b)
    assert both.new_data_key(uuid.uuid4())[1].key_id == b[0]

    # A removed: the rewrapped key still opens the unchanged object; the old one does not.
    only_b = keyring(b, active=b[0])
    assert decrypt(only_b.unwrap(object_id, wrapped_b), ciphertext, object_id.bytes) == plaintext
    with pytest.raises(KeyUnavailable):
        only_b.unwrap(object_id, wrapped_a)


def test_active_id_must_be_a_listed_key() -> None:
    key_id, value = new_kek()
    with pytest.raises(ValueError, match="GLV_ARCHIVE_ACTIVE_KEY_ID 'kek-other'"):
        keyring((key_id, value), active="kek-other")


def test_production_requires_keys_and_active_id() -> None:
    key_id, value = new_kek()
    keys = SecretStr(json.dumps({key_id: value}))
    with pytest.raises(InsecureSecret, match="GLV_ARCHIVE_KEYS"):
        Keyring.from_settings(settings(active_key_id=key_id))
    with pytest.raises(InsecureSecret, match="GLV_ARCHIVE_KEYS"):
        Keyring.from_settings(settings(keys=SecretStr(" "), active_key_id=key_id))
    with pytest.raises(InsecureSecret, match="GLV_ARCHIVE_ACTIVE_KEY_ID"):
        Keyring.from_settings(settings(keys=keys))
    assert Keyring.from_settings(settings(keys=keys, active_key_id=key_id)).active_id == key_id


def test_development_without_keys_gets_an_ephemeral_kek_with_a_warning() -> None:
    with capture_logs() as logs:
        ring = Keyring.from_settings(settings(environment="development"))
    assert ring.active_id.startswith("ephemeral-")
    assert [entry["log_level"] for entry in logs] == ["warning"]
    assert "unreadable" in logs[0]["event"]
    object_id = uuid.uuid4()
    data_key, wrapped = ring.new_data_key(object_id)
    assert decrypt(ring.unwrap(object_id, wrapped), encrypt(data_key, b"x" * 1000, object_id.bytes), object_id.bytes)
    # Another process (another ephemeral KEK) cannot read it.
    with pytest.raises(KeyUnavailable):
        Keyring.from_settings(settings(environment="development")).unwrap(object_id, wrapped)


def test_development_with_keys_needs_the_active_id() -> None:
    key_id, value = new_kek()
    with pytest.raises(ValueError, match="GLV_ARCHIVE_ACTIVE_KEY_ID"):
        Keyring.from_settings(settings(environment="development", keys=SecretStr(json.dumps({key_id: value}))))


def aead_keyset_of_the_wrong_kind() -> str:
    """A valid keyset, but streaming AEAD, not AEAD (easy to paste by mistake)."""
    handle = tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES128_GCM_HKDF_4KB)
    return base64.b64encode(proto_keyset_format.serialize(handle, secret_key_access.TOKEN)).decode()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("not json", "not valid JSON"),
        ("list", "non-empty JSON object"),
        ("empty", "non-empty JSON object"),
        ("not a string", "non-empty key id to a base64 string"),
        ("not base64", "'kek-1' is not valid base64"),
        ("garbage keyset", "'kek-1' is not a Tink AEAD keyset"),
        ("wrong primitive", "'kek-1' is not a Tink AEAD keyset"),
    ],
)
def test_parse_errors_name_the_variable_never_the_value(case: str, expected: str) -> None:
    _, good = new_kek()
    raw = {
        "not json": '{"kek-1": "' + good,
        "list": json.dumps([good]),
        "empty": "{}",
        "not a string": json.dumps({"kek-1": 12345678}),
        "not base64": json.dumps({"kek-1": good[:-4] + "!!!!"}),
        "garbage keyset": json.dumps({"kek-1": base64.b64encode(b"Sup3rS3cretKeyBytes" * 3).decode()}),
        "wrong primitive": json.dumps({"kek-1": aead_keyset_of_the_wrong_kind()}),
    }[case]
    with pytest.raises(ValueError, match="GLV_ARCHIVE_KEYS") as caught:
        parse_keks(raw)
    assert expected in str(caught.value)
    # Neither the message nor a chained error carries the value.
    assert caught.value.__suppress_context__ or case in {"list", "empty", "not a string"}
    message = str(caught.value)
    assert good[:12] not in message and "Sup3rS3cret" not in message and "U3VwM3JT" not in message
