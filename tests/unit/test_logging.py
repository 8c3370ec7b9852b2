"""Personal data never reaches a log line."""

from __future__ import annotations

import json

import pytest
import structlog

from glv_runtime.logs import REDACTED, configure_logging


@pytest.fixture(autouse=True)
def _restore_structlog():  # type: ignore[no-untyped-def]
    yield
    structlog.reset_defaults()  # the configured logger holds the captured stdout


def test_personal_data_is_redacted(capsys) -> None:  # type: ignore[no-untyped-def]
    configure_logging("test", "INFO")
    log = structlog.get_logger()
    log.info(
        "filed",
        ticket_id="3f1c",
        email="siti.rahayu@example.co.id",
        stakeholder={"name": "Siti Rahayu", "phone": "+6281234567890"},
        note="call 081234567890 or write to andi@example.com, NIK 7371234567890123",
        nested=[{"national_id": "7371234567890123"}],
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    text = json.dumps(line)
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
    configure_logging("test", "INFO")
    structlog.get_logger().info("x", event_id="0b8e9a9c-1c1e-4d7a-9f0e-1234567890ab", offset=1234567890123456)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event_id"] == "0b8e9a9c-1c1e-4d7a-9f0e-1234567890ab"
    assert line["offset"] == 1234567890123456
