"""Secrets fail closed: production refuses a missing or weak one, naming the setting;
development starts with an ephemeral one."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from glv_runtime.secrets import MIN_SECRET_LENGTH, InsecureSecret, check_secret, check_secret_list, weakness
from glv_scheduler import app
from glv_scheduler.app import build_spec
from glv_scheduler.settings import SchedulerSettings, checked

STRONG = "q7R2vN9xLk4TzW8pYc3HmJ6sFb1DgA5e"  # 32 characters, random
OTHER_STRONG = "Xw4Nc8Kp2Lr6Tz0Vb5Mq9Hs3Jd7Gf1Ya"
JITSI = "GLV_SCHEDULER_JITSI_APP_SECRET"


def settings(**changes: Any) -> SchedulerSettings:
    """Every secret given explicitly, so that the test's environment cannot lend one."""
    values: dict[str, Any] = {
        "environment": "production",
        "meeting_provider": "jitsi",
        "jitsi_app_secret": SecretStr(STRONG),
        "bbb_secret": None,
        "webhook_enabled": True,
        "webhook_secrets": [SecretStr(OTHER_STRONG)],
    }
    return SchedulerSettings(**(values | changes))


WEAK = {
    "missing": None,
    "empty": "",
    "change-me": "CHANGE-ME-at-least-32-bytes-long-000000",
    "changeme": "changeme0123456789abcdefghijklmnopq",
    "dev-only": "dev-only-jitsi-secret-never-use-in-production",
    "example": "an-example-value-0123456789abcdefghij",
    "secret": "my-super-secret-0123456789abcdefghij",
    "password": "Password0123456789abcdefghijklmnopq",
    "one character": "x" * 64,
    "short": STRONG[:31],
}


@pytest.mark.parametrize("case", WEAK)
def test_production_refuses_a_weak_secret_naming_the_setting(case: str) -> None:
    with pytest.raises(InsecureSecret, match=JITSI):
        check_secret(JITSI, WEAK[case], "production")


@pytest.mark.parametrize("case", WEAK)
def test_production_refuses_to_build_the_scheduler_with_a_weak_jitsi_secret(case: str) -> None:
    value = WEAK[case]
    with pytest.raises(InsecureSecret, match=JITSI):
        build_spec(settings(jitsi_app_secret=None if value is None else SecretStr(value)))


def test_a_strong_secret_passes_in_production() -> None:
    assert weakness(STRONG) is None
    assert check_secret(JITSI, SecretStr(STRONG), "production").get_secret_value() == STRONG
    build_spec(settings())


def test_only_the_chosen_providers_secret_is_needed() -> None:
    with pytest.raises(InsecureSecret, match="GLV_SCHEDULER_BBB_SECRET"):
        build_spec(settings(meeting_provider="bigbluebutton", jitsi_app_secret=SecretStr(STRONG)))
    build_spec(settings(meeting_provider="bigbluebutton", jitsi_app_secret=None, bbb_secret=SecretStr(STRONG)))


def test_production_refuses_an_empty_webhook_secret_list_unless_the_webhook_is_off() -> None:
    with pytest.raises(InsecureSecret, match=r"GLV_SCHEDULER_WEBHOOK_SECRETS is empty.*WEBHOOK_ENABLED=false"):
        build_spec(settings(webhook_secrets=[]))
    spec = build_spec(settings(webhook_secrets=[], webhook_enabled=False))
    paths = {getattr(r, "path", "") for r in spec.routes(None)}  # type: ignore[arg-type]
    assert "/v1/webhooks/meetings" not in paths


@pytest.mark.parametrize("weak", ["", "CHANGE-ME", STRONG[:20]])
def test_production_refuses_each_weak_webhook_secret_by_its_index(weak: str) -> None:
    with pytest.raises(InsecureSecret, match=r"GLV_SCHEDULER_WEBHOOK_SECRETS\[1\]"):
        build_spec(settings(webhook_secrets=[SecretStr(OTHER_STRONG), SecretStr(weak)]))


def test_the_command_refuses_to_start_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLV_ENVIRONMENT", "production")
    monkeypatch.delenv(JITSI, raising=False)
    monkeypatch.setenv("GLV_SCHEDULER_MEETING_PROVIDER", "jitsi")
    monkeypatch.setattr(gc, "set_threshold", lambda *_: None)  # the service's GC tuning stays out of the tests
    with pytest.raises(SystemExit) as refused:
        app.main()
    assert "refuses to start" in str(refused.value.code)
    assert JITSI in str(refused.value.code)


def test_development_starts_with_an_ephemeral_secret_and_says_so() -> None:
    with capture_logs() as logs:
        first = checked(settings(environment="development", jitsi_app_secret=None, webhook_secrets=[]))
        second = checked(settings(environment="development", jitsi_app_secret=None))
        build_spec(settings(environment="development", jitsi_app_secret=None))
    made = [first.jitsi_app_secret, second.jitsi_app_secret]
    assert all(s is not None and weakness(s.get_secret_value()) is None for s in made)
    assert made[0] != made[1]  # random, never a built-in value
    assert any(line["event"].startswith("secret not set") and line["setting"] == JITSI for line in logs)
    assert first.webhook_secrets == []  # no key at all: the webhook answers 503
    assert any("webhook answers 503" in line["event"] for line in logs)


def test_development_keeps_a_weak_secret_with_a_warning() -> None:
    with capture_logs() as logs:
        kept = check_secret_list("GLV_X", [SecretStr("short")], "development")
    assert [s.get_secret_value() for s in kept] == ["short"]
    assert logs[0]["setting"] == "GLV_X[0]"
    assert "shorter than" in logs[0]["problem"]


def test_a_jitsi_key_is_never_shorter_than_an_hs256_key_even_in_development() -> None:
    short = "k" * 7 + STRONG[:20]
    assert len(short) < MIN_SECRET_LENGTH
    with pytest.raises(InsecureSecret, match=JITSI):
        build_spec(settings(environment="development", jitsi_app_secret=SecretStr(short)))
