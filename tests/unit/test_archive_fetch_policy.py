"""The archive fetcher's pure policy: which URLs (and redirects) may be fetched, which
addresses may be connected to, and what a refusal says."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from glv_archive.fetch import (
    PERMANENT_REASONS,
    AddressClass,
    FetchPolicy,
    FetchRefused,
    Reason,
    check_addresses,
    check_url,
    classify_address,
    describe,
    resolve_redirect,
    retry_after,
)
from glv_archive.settings import ArchiveSettings

POLICY = FetchPolicy(
    allowed_hosts=frozenset(
        {"Media.Platform.Example", "*.cdn.example.org", "203.0.113.7", "[2001:db8::7]", "dev.local."}
    ),
    http_hosts=frozenset({"dev.local"}),
    private_hosts=frozenset({"dev.local", "*.office.example"}),
)


@pytest.mark.parametrize(
    "url",
    [
        "https://media.platform.example/rec/1.mp4?X-Amz-Signature=abc",
        "https://MEDIA.platform.example./rec/1.mp4",
        "https://media.platform.example:8443/rec/1.mp4",
        "https://a.cdn.example.org/x",
        "https://a.b.cdn.example.org/x",
        "https://203.0.113.7/x",
        "https://[2001:db8::7]/x",
        "http://dev.local/x",
        "https://dev.local/x",
    ],
)
def test_allowed_urls(url: str) -> None:
    checked = check_url(url, POLICY)
    assert isinstance(checked, httpx.URL)
    assert checked.fragment == ""


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://media.platform.example/x", "forbidden_scheme"),
        ("ftp://media.platform.example/x", "forbidden_scheme"),
        ("file:///etc/passwd", "forbidden_scheme"),
        ("gopher://media.platform.example/x", "forbidden_scheme"),
        ("media.platform.example/x", "forbidden_scheme"),
        ("https://other.example/x", "forbidden_host"),
        ("https://media.platform.example.evil.net/x", "forbidden_host"),
        ("https://cdn.example.org/x", "forbidden_host"),  # the wildcard's own domain is not listed
        ("https://evilcdn.example.org/x", "forbidden_host"),
        ("https://media.platform.example@evil.net/x", "forbidden_host"),
        ("https://user:pass@media.platform.example/x", "forbidden_host"),
        ("https://127.0.0.1/x", "forbidden_host"),
        ("https://203.0.113.8/x", "forbidden_host"),
        ("https://[::1]/x", "forbidden_host"),
        ("https://2130706433/x", "forbidden_host"),  # 127.0.0.1 in decimal
        ("https:///x", "forbidden_host"),
        ("https://exa mple.org/x", "forbidden_host"),
    ],
)
def test_refused_urls(url: str, reason: str) -> None:
    with pytest.raises(FetchRefused) as caught:
        check_url(url + "?token=SECRET", POLICY)
    assert (caught.value.reason, caught.value.permanent) == (reason, True)
    assert "SECRET" not in str(caught.value)
    assert "pass" not in caught.value.detail


def test_a_wildcard_does_not_match_ip_literals() -> None:
    policy = FetchPolicy(allowed_hosts=frozenset({"*.0.0.1"}))
    with pytest.raises(FetchRefused, match="forbidden_host"):
        check_url("https://127.0.0.1/", policy)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/other/2.mp4?sig=1", "https://media.platform.example/other/2.mp4?sig=1"),
        ("2.mp4", "https://media.platform.example/rec/2.mp4"),
        ("//a.cdn.example.org/3.mp4", "https://a.cdn.example.org/3.mp4"),
        ("https://a.cdn.example.org/4.mp4#frag", "https://a.cdn.example.org/4.mp4"),
    ],
)
def test_redirects_resolve_against_the_current_url(location: str, expected: str) -> None:
    current = httpx.URL("https://media.platform.example/rec/1.mp4?sig=0")
    assert str(resolve_redirect(current, location, POLICY)) == expected


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("//evil.net/x", "forbidden_host"),
        ("https://169.254.169.254/latest/meta-data/", "forbidden_host"),
        ("http://media.platform.example/x", "forbidden_scheme"),
        ("file:///etc/passwd", "forbidden_scheme"),
        ("https://u:p@a.cdn.example.org/x", "forbidden_host"),
    ],
)
def test_redirects_are_checked_like_the_first_url(location: str, reason: str) -> None:
    current = httpx.URL("https://media.platform.example/rec/1.mp4?sig=SECRET")
    with pytest.raises(FetchRefused) as caught:
        resolve_redirect(current, location, POLICY)
    assert caught.value.reason == reason
    assert "SECRET" not in str(caught.value)


def test_describe_keeps_neither_query_nor_credentials_nor_a_token_in_the_path() -> None:
    url = httpx.URL("https://u:p@media.platform.example:8443/rec/1.mp4?token=SECRET#f")
    assert describe(url) == "https://media.platform.example:8443/.../1.mp4"
    assert describe(httpx.URL("https://p.example/recordings/SECRET/video.mp4")) == "https://p.example/.../video.mp4"
    assert describe(httpx.URL("https://p.example/video.mp4")) == "https://p.example/video.mp4"


PRIVATE, PUBLIC, METADATA = AddressClass.PRIVATE, AddressClass.PUBLIC, AddressClass.METADATA


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("93.184.216.34", PUBLIC),
        ("8.8.8.8", PUBLIC),
        ("2606:2800:220:1:248:1893:25c8:1946", PUBLIC),
        ("::ffff:93.184.216.34", PRIVATE),  # ::ffff:0:0/96 is not routable as such
        ("127.0.0.1", PRIVATE),
        ("127.8.9.10", PRIVATE),
        ("10.1.2.3", PRIVATE),
        ("172.16.0.1", PRIVATE),
        ("172.31.255.254", PRIVATE),
        ("192.168.1.1", PRIVATE),
        ("169.254.1.1", PRIVATE),
        ("100.64.1.1", PRIVATE),  # CGNAT
        ("100.127.255.254", PRIVATE),
        ("0.0.0.0", PRIVATE),
        ("255.255.255.255", PRIVATE),
        ("224.0.0.1", PRIVATE),
        ("240.0.0.1", PRIVATE),
        ("198.18.0.1", PRIVATE),
        ("::1", PRIVATE),
        ("::", PRIVATE),
        ("fe80::1", PRIVATE),
        ("fc00::1", PRIVATE),
        ("ff02::1", PRIVATE),
        ("::ffff:127.0.0.1", PRIVATE),
        ("::ffff:10.0.0.1", PRIVATE),
        ("2002:7f00:1::", PRIVATE),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", PRIVATE),  # NAT64 of 10.0.0.1
        ("169.254.169.254", METADATA),
        ("fd00:ec2::254", METADATA),
        ("::ffff:169.254.169.254", METADATA),
        ("100.100.100.200", METADATA),
    ],
)
def test_address_classes(address: str, expected: AddressClass) -> None:
    assert classify_address(address) is expected


def test_public_addresses_pass() -> None:
    assert [str(a) for a in check_addresses("media.platform.example", ["93.184.216.34", "93.184.216.34"], POLICY)] == [
        "93.184.216.34"
    ]


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["93.184.216.34", "10.0.0.1"], ["::ffff:192.168.0.1"], ["100.64.1.1"], ["fe80::1"]],
)
def test_any_non_public_address_refuses_a_host_not_private(addresses: list[str]) -> None:
    with pytest.raises(FetchRefused) as caught:
        check_addresses("media.platform.example", addresses, POLICY)
    assert (caught.value.reason, caught.value.permanent) == ("forbidden_address", True)


@pytest.mark.parametrize("host", ["dev.local", "DEV.LOCAL.", "rec.office.example"])
def test_private_hosts_may_resolve_to_private_addresses(host: str) -> None:
    assert len(check_addresses(host, ["127.0.0.1", "10.0.0.1", "::1"], POLICY)) == 3


@pytest.mark.parametrize("metadata", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"])
def test_metadata_addresses_are_refused_even_for_private_hosts(metadata: str) -> None:
    listed = frozenset({"169.254.169.254", "dev.local"})
    policy = FetchPolicy(allowed_hosts=listed, private_hosts=listed)
    for host in ("dev.local", "169.254.169.254"):
        with pytest.raises(FetchRefused, match="metadata"):
            check_addresses(host, ["10.0.0.1", metadata], policy)


def test_no_address_is_unreachable() -> None:
    with pytest.raises(FetchRefused) as caught:
        check_addresses("media.platform.example", [], POLICY)
    assert (caught.value.reason, caught.value.permanent) == ("unreachable", False)


@pytest.mark.parametrize(
    ("reason", "permanent"),
    [
        ("forbidden_scheme", True),
        ("forbidden_host", True),
        ("forbidden_address", True),
        ("too_many_redirects", True),
        ("oversized", True),
        ("wrong_content_type", True),
        ("refused", True),
        ("truncated", False),
        ("size_mismatch", False),
        ("checksum_mismatch", False),
        ("not_found", False),
        ("upstream_error", False),
        ("unreachable", False),
    ],
)
def test_permanence_follows_the_reason(reason: Reason, permanent: bool) -> None:
    refused = FetchRefused(reason, "detail", retry_after_s=3.0)
    assert (refused.reason, refused.detail, refused.permanent, refused.retry_after_s) == (
        reason,
        "detail",
        permanent,
        3.0,
    )
    assert (reason in PERMANENT_REASONS) is permanent


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 01 Jan 2025 00:02:00 GMT", 120.0),
        ("Tue, 31 Dec 2024 23:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert retry_after(value, now=datetime(2025, 1, 1, tzinfo=UTC)) == expected


def test_policy_from_settings() -> None:
    settings = ArchiveSettings(
        environment="development",
        fetch_allowed_hosts=["Media.Platform.Example", "*.cdn.example.org"],
        fetch_http_hosts=["localhost"],
        fetch_private_hosts=["localhost"],
        fetch_max_bytes=1000,
        fetch_max_redirects=2,
        chat_types=["Application/JSON"],
    )
    policy = FetchPolicy.from_settings(settings)
    assert policy.allowed_hosts == {"media.platform.example", "*.cdn.example.org"}
    assert policy.http_hosts == policy.private_hosts == frozenset({"localhost"})
    assert (policy.max_bytes, policy.max_redirects) == (1000, 2)
    assert (policy.connect_timeout_s, policy.read_timeout_s) == (10.0, 60.0)
    assert policy.content_types["chat"] == {"application/json"}
    assert policy.content_types["video"] == {"video/mp4", "video/webm"}
    assert set(policy.content_types) == {"video", "audio", "chat"}


def test_production_refuses_plain_http_hosts() -> None:
    with pytest.raises(ValueError, match="GLV_ARCHIVE_FETCH_HTTP_HOSTS"):
        FetchPolicy.from_settings(ArchiveSettings(environment="production", fetch_http_hosts=["localhost"]))
    assert FetchPolicy.from_settings(ArchiveSettings(environment="production")).http_hosts == frozenset()


@pytest.mark.parametrize("pattern", ["*", "*.", "a.*.example.org", "*example.org", ""])
def test_malformed_host_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        FetchPolicy(allowed_hosts=frozenset({pattern}))
