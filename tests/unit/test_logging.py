"""Personal data never reaches a log line; what is not personal stays readable."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import structlog

from glv_runtime.logs import REDACTED, configure_cli_logging, configure_logging, redact_text
from glv_schemas.events import Stakeholder


@pytest.fixture(autouse=True)
def _restore_structlog():  # type: ignore[no-untyped-def]
    yield
    structlog.reset_defaults()  # the configured logger holds the captured stdout
    logging.getLogger().handlers[:] = []


def logged(capsys: pytest.CaptureFixture[str], **fields: Any) -> tuple[dict[str, Any], str]:
    """One line logged through the service set-up: the parsed line and its text."""
    configure_logging("test", "INFO")
    structlog.get_logger().info("x", **fields)
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    line = json.loads(raw)
    return line, raw + json.dumps(line, ensure_ascii=False)


def test_personal_data_is_redacted(capsys) -> None:  # type: ignore[no-untyped-def]
    line, text = logged(
        capsys,
        ticket_id="3f1c",
        email="siti.rahayu@example.co.id",
        stakeholder={"name": "Siti Rahayu", "phone": "+6281234567890"},
        note="call 081234567890 or write to andi@example.com, NIK 7371234567890123",
        nested=[{"national_id": "7371234567890123"}],
    )
    for secret in (
        "siti.rahayu@",
        "Siti Rahayu",
        "6281234567890",
        "081234567890",
        "andi@example.com",
        "7371234567890123",
    ):
        assert secret not in text
    assert line["email"] == REDACTED
    assert line["ticket_id"] == "3f1c"
    assert line["service"] == "test"


def test_uuids_and_offsets_are_left_alone(capsys) -> None:  # type: ignore[no-untyped-def]
    line, _ = logged(capsys, event_id="0b8e9a9c-1c1e-4d7a-9f0e-1234567890ab", offset=1234567890123456)
    assert line["event_id"] == "0b8e9a9c-1c1e-4d7a-9f0e-1234567890ab"
    assert line["offset"] == 1234567890123456


@pytest.mark.parametrize(
    "phone",
    [
        "081234567890",
        "0812-3456-7890",
        "0812 3456 7890",
        "0812.3456.7890",
        "0812-345-678",
        "+6281234567890",
        "+62 812 3456 7890",
        "+62-812-3456-7890",
        "+62 (0)812 3456 7890",
        "62812 3456 7890",
        "6281234567890",
        "0062 812 3456 7890",
        "(021) 345 6789",
        "(021) 3456-7890",
        "021-3456789",
        "021 3456 789",
        "(0411) 123456",
        "+62 21 3456 7890",
        "+62 (21) 345-6789",
        "(0812) 3456 7890",
    ],
)
def test_indonesian_phones_as_people_write_them_are_redacted(phone: str) -> None:
    for text in (phone, f"hubungi {phone} ya", f"call: {phone}.", f"({phone})", f"tel:{phone}, thanks"):
        redacted = redact_text(text)
        assert phone not in redacted, text
        assert not any(c.isdigit() for c in redacted), (text, redacted)


@pytest.mark.parametrize(
    "nik",
    [
        "7371234567890123",
        "7371 2345 6789 0123",
        "7371.2345.6789.0123",
        "7371-2345-6789-0123",
        "32.01.01.010190.0001",
        "320101 010190 0001",
        "3201-01-010190-0001",
        "1971-01-01-0190-0001",
    ],
)
def test_niks_grouped_any_way_are_redacted(nik: str) -> None:
    for text in (nik, f"NIK {nik}", f"nik:{nik};", f"KTP no. {nik} (lama)"):
        redacted = redact_text(text)
        assert not any(c.isdigit() for c in redacted), (text, redacted)


@pytest.mark.parametrize(
    "key",
    [
        "name",
        "Nama",
        "NAMA_LENGKAP",
        "fullName",
        "full_name",
        "email",
        "Surel",
        "stakeholderEmail",
        "phone",
        "telepon",
        "telp",
        "HP",
        "no_hp",
        "noHp",
        "nomor-telepon",
        "whatsapp",
        "wa",
        "national_id",
        "NIK",
        "ktp",
        "no_ktp",
        "npwp",
        "address",
        "alamat",
        "organisation",
        "organization",
        "organisasi",
        "instansi",
        "perusahaan",
        "company",
        "birth_date",
        "tanggal_lahir",
        "tglLahir",
        "token",
        "api_token",
        "jwt",
        "secret",
        "client_secret",
        "password",
        "Authorization",
        "join_url",
        "moderatorUrl",
        "description",
        "subject",
    ],
)
def test_personal_keys_in_both_languages_and_any_case_are_redacted(capsys, key: str) -> None:  # type: ignore[no-untyped-def]
    line, text = logged(capsys, **{key: "Ibu Kartini Wulandari"}, nested={"a": [{key: {"deep": "Kartini"}}]})
    assert "Kartini" not in text
    assert line[key] == REDACTED
    assert line["nested"]["a"][0][key] == REDACTED


def test_tokens_and_links_with_tokens_are_redacted() -> None:
    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb29tIjoiUExQLTEyMyIsInN1YiI6Im1lZXQifQ.dGhpcy1pcy1hLXNpZ25hdHVyZQ"
    texts = {
        f"token {jwt} issued": jwt,
        "Authorization: Bearer 9f8e7d6c5b4a3928.abcdef": "9f8e7d6c5b4a3928",
        "sent header bearer s3cr3t-opaque-token": "s3cr3t-opaque-token",
        "join https://meet.example.go.id/KPKNL-PLP-42?jwt=abc.def.ghi&lang=id": "abc.def.ghi",
        "download https://s3.local/bucket/rec.mp4?X-Amz-Credential=AKIA1/2&X-Amz-Signature=0a1b2c3d": "0a1b2c3d",
        "feed https://glv.example/agenda.ics?token=Zm9vYmFyYmF6": "Zm9vYmFyYmF6",
        "connect postgresql://glv:hunter2@db.local:5432/glv failed": "hunter2",
        'payload {"nama": "Siti Rahayu", "organization": "PT Maju"}': "Siti Rahayu",
        "1 validation error [type=string_type, input_value='Siti Rahayu', input_type=str]": "Siti Rahayu",
        "nama=Siti Rahayu, umur=30": "Siti",
        "password: hunter2": "hunter2",
    }
    for text, secret in texts.items():
        assert secret not in redact_text(text), text
    assert "lang=id" in redact_text("join https://meet.example.go.id/x?jwt=abc.def&lang=id")


@pytest.mark.parametrize(
    "text",
    [
        "0b8e9a9c-1c1e-4d7a-9f0e-1234567890ab",
        "08123456-7890-4abc-8def-123456789012",  # a UUID whose first group reads like a phone
        "12345678-1234-4234-8234-123456789012",
        "2026-11-29T11:28:52.925447Z",
        "2026-11-29T11:28:52.925447+00:00",
        "2026-11-29 18:28:52+07:00",
        "2026-11-29",
        "PLP-261129-0042",
        "MKS-061129-0001",
        "JKTBAR-261129-12345",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "offset 1234567 partition 3 count 250",
        "took 0.0123456789 s (12.5 ms, 812 ms)",
        "t0123456789.glv.portal.sim-portal.tickets[0]@1234567",
        "stakeholder.phone: string_pattern_mismatch; stakeholder: missing; subject: string_too_short",
        "retry_in_s=0.5 attempt=2 size=1000",
        "ticket PLP-261129-0042 scheduled at 2026-11-29T02:00:00Z, slot 6f0c1d7e-3b7a-4d9e-8c51-0e7a4b2d9f10",
    ],
)
def test_ordinary_values_are_kept(text: str) -> None:
    assert redact_text(text) == text


def test_ordinary_values_survive_a_log_line(capsys) -> None:  # type: ignore[no-untyped-def]
    fields: dict[str, Any] = {
        "event_id": "0b8e9a9c-1c1e-4d7a-9f0e-1234567890ab",
        "ticket_code": "PLP-261129-0042",
        "starts_at": "2026-11-29T02:00:00+00:00",
        "offset": 1234567890123,
        "partition": 5,
        "count": 0,
        "duration_s": 0.0123,
        "retry_in_s": 0.5,
        "topics": ["t1.glv.ticketing.events", "t1.glv.dlq.ticketing.intake"],
        "ok": True,
        "nothing": None,
    }
    line, _ = logged(capsys, **fields)
    for key, value in fields.items():
        assert line[key] == value


def test_library_log_records_are_redacted(capsys) -> None:  # type: ignore[no-untyped-def]
    configure_logging("test", "INFO")
    logging.getLogger("aiokafka").warning("record from %s (%s) refused", "siti@example.com", "0812-3456-7890")
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    line = json.loads(raw)
    assert "siti@example.com" not in raw
    assert "3456" not in raw
    assert line["logger"] == "aiokafka"


def test_models_bytes_and_exceptions_are_redacted(capsys) -> None:  # type: ignore[no-untyped-def]
    person = Stakeholder(
        stakeholder_ref="p-1",
        name="Siti Rahayu",
        organisation="PT Maju Jaya",
        email="siti@example.com",
        phone="+6281234567890",
        national_id="7371234567890123",
    )
    configure_logging("test", "INFO")
    log = structlog.get_logger()
    log.info("model", record=person, raw=b'{"email": "siti@example.com", "nama": "Siti Rahayu"}')
    try:
        raise ValueError("no slot for siti@example.com, NIK 7371234567890123")
    except ValueError:
        log.exception("failed")
    out = capsys.readouterr().out
    for secret in ("Siti Rahayu", "PT Maju", "siti@example.com", "81234567890", "7371234567890123"):
        assert secret not in out
    first = json.loads(out.splitlines()[0])
    assert first["record"]["stakeholder_ref"] == "p-1"
    assert first["record"]["name"] == REDACTED


def test_deep_nesting_is_redacted_whole() -> None:
    from glv_runtime.logs import redact

    value: Any = "siti@example.com"
    for _ in range(20):
        value = {"level": [value]}
    assert "siti" not in json.dumps(redact(value))


def test_cli_logging_is_redacted_on_stderr(capsys) -> None:  # type: ignore[no-untyped-def]
    configure_cli_logging("glv-deadletters", "INFO")
    structlog.get_logger().warning("not replayed", contact="Siti", note="wa 0812 3456 7890", dlq_offset=7)
    captured = capsys.readouterr()
    assert captured.out == ""
    line = json.loads(captured.err.strip().splitlines()[-1])
    assert line == {
        "event": "not replayed",
        "contact": REDACTED,
        "note": f"wa {REDACTED}",
        "dlq_offset": 7,
        "service": "glv-deadletters",
        "level": "warning",
        "timestamp": line["timestamp"],
    }
