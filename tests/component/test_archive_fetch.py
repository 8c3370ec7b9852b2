"""The archive's artifact fetcher against a real HTTP server on 127.0.0.1: streaming,
size and checksum checks, redirects, status mapping, and the connect-time address guard."""

from __future__ import annotations

import asyncio
import dataclasses
import tracemalloc
from collections.abc import AsyncIterator
from types import TracebackType

import httpx
import pytest

from glv_archive.fetch import FetchPolicy, FetchRefused, make_client, open_artifact
from tests.component.artifact_server import ArtifactServer, Handler, Request, blocks, send, sha256_of

MB = 1024 * 1024
LOCAL = frozenset({"127.0.0.1", "localhost"})
POLICY = FetchPolicy(
    allowed_hosts=LOCAL,
    http_hosts=LOCAL,
    private_hosts=LOCAL,
    max_bytes=64 * MB,
    max_redirects=3,
    connect_timeout_s=2.0,
    read_timeout_s=2.0,
    content_types={
        "video": frozenset({"video/mp4", "video/webm"}),
        "audio": frozenset({"audio/mpeg"}),
        "chat": frozenset({"application/json", "text/plain"}),
    },
)
BIG = 50 * MB
BIG_SHA256 = sha256_of(blocks(BIG))
SMALL = b'{"messages": []}\n' * 1000
SMALL_SHA256 = sha256_of([SMALL])


def video(total: int) -> dict[str, str]:
    return {"Content-Type": "video/mp4", "Content-Length": str(total)}


async def good(request: Request, writer: asyncio.StreamWriter) -> None:
    await send(writer, 200, video(BIG), blocks(BIG))


async def small(request: Request, writer: asyncio.StreamWriter) -> None:
    await send(writer, 200, {"Content-Type": "text/plain; charset=UTF-8", "Content-Length": str(len(SMALL))}, SMALL)


async def small_chunked(request: Request, writer: asyncio.StreamWriter) -> None:
    await send(writer, 200, {"Content-Type": "application/json"}, [SMALL[:1000], SMALL[1000:]], chunked=True)


async def oversized_declared(request: Request, writer: asyncio.StreamWriter) -> None:
    # Announces 100 GB; sends nothing of it.
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 107374182400\r\n\r\n")
    await writer.drain()


async def oversized_chunked(request: Request, writer: asyncio.StreamWriter) -> None:
    await send(writer, 200, {"Content-Type": "video/mp4"}, blocks(4 * MB), chunked=True)


async def wrong_type(request: Request, writer: asyncio.StreamWriter) -> None:
    await send(writer, 200, {"Content-Type": "text/html", "Content-Length": "5"}, b"<p>hi")


async def gzipped(request: Request, writer: asyncio.StreamWriter) -> None:
    await send(writer, 200, {"Content-Type": "video/mp4", "Content-Encoding": "gzip", "Content-Length": "3"}, b"abc")


async def truncated(request: Request, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 200000\r\n\r\n" + b"x" * 100000)
    await writer.drain()  # and the connection closes


async def stalled(request: Request, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 200000\r\n\r\n" + b"x" * 1000)
    await writer.drain()
    await asyncio.Event().wait()  # until the server is closed


async def hang_up(request: Request, writer: asyncio.StreamWriter) -> None:
    pass  # closes without an answer


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        await send(writer, code, {"Content-Length": "0", **(headers or {})})

    return handler


def redirect(location: str, code: int = 302) -> Handler:
    return status(code, {"Location": location})


@pytest.fixture
async def server() -> AsyncIterator[ArtifactServer]:
    async with ArtifactServer() as running:
        routes: dict[str, Handler] = {
            "/good": good,
            "/small": small,
            "/small-chunked": small_chunked,
            "/oversized-declared": oversized_declared,
            "/oversized-chunked": oversized_chunked,
            "/wrong-type": wrong_type,
            "/gzipped": gzipped,
            "/truncated": truncated,
            "/stalled": stalled,
            "/hang-up": hang_up,
            "/gone": status(410),
            "/forbidden": status(403),
            "/busy": status(503, {"Retry-After": "120"}),
            "/throttled": status(429, {"Retry-After": "7"}),
            "/partial": status(206),
            "/redirect": redirect("/small?token=next-secret"),
            "/redirect-twice": redirect("/redirect", 301),
            "/redirect-localhost": redirect(running.url("/small", host="localhost"), 307),
            "/redirect-away": redirect("https://evil.example.net/x?token=SECRET"),
            "/redirect-https": redirect(f"https://127.0.0.1:{running.port}/small"),
            "/redirect-nowhere": status(302),
            "/loop": redirect("/loop"),
        }
        running.routes.update(routes)
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(POLICY) as made:
        yield made


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    kind: str = "chat",
    policy: FetchPolicy = POLICY,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
) -> tuple[bytes, str]:
    async with open_artifact(
        client, url, kind, policy, expected_size=expected_size, expected_sha256=expected_sha256
    ) as download:
        body = b"".join([chunk async for chunk in download.chunks(4096)])
        return body, download.sha256


async def refusal(
    client: httpx.AsyncClient,
    url: str,
    kind: str = "video",
    policy: FetchPolicy = POLICY,
    *,
    expected_size: int | None = None,
) -> FetchRefused:
    with pytest.raises(FetchRefused) as caught:
        await fetch(client, url, kind, policy, expected_size=expected_size)
    assert "SECRET" not in str(caught.value) and "token" not in caught.value.detail
    return caught.value


# ------------------------------------------------------------------ the good path


async def test_a_large_artifact_streams_in_bounded_memory(server: ArtifactServer, client: httpx.AsyncClient) -> None:
    tracemalloc.start()
    try:
        async with open_artifact(
            client, server.url("/good?token=SECRET"), "video", POLICY, expected_size=BIG, expected_sha256=BIG_SHA256
        ) as download:
            assert (download.content_type, download.declared_length) == ("video/mp4", BIG)
            count = 0
            async for chunk in download.chunks():
                assert len(chunk) <= 1 << 20
                count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (download.size, download.sha256) == (BIG, BIG_SHA256)
    assert count >= 50
    assert peak < 10 * MB, f"peak {peak / MB:.1f} MB while streaming {BIG // MB} MB"


async def test_a_content_type_with_parameters_is_accepted(server: ArtifactServer, client: httpx.AsyncClient) -> None:
    async with open_artifact(
        client, server.url("/small"), "chat", POLICY, expected_size=len(SMALL), expected_sha256=SMALL_SHA256.upper()
    ) as download:
        assert download.content_type == "text/plain"
        assert b"".join([c async for c in download.chunks()]) == SMALL
    assert download.sha256 == SMALL_SHA256
    # Asked for no compression: what is stored is what is hashed.
    assert server.requests[0].headers["accept-encoding"] == "identity"


async def test_a_chunked_body_within_the_limit_is_read(server: ArtifactServer, client: httpx.AsyncClient) -> None:
    body, digest = await fetch(client, server.url("/small-chunked"), expected_size=len(SMALL))
    assert (body, digest) == (SMALL, SMALL_SHA256)


async def test_proxy_settings_in_the_environment_are_ignored(
    server: ArtifactServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    async with make_client(POLICY) as client:
        assert (await fetch(client, server.url("/small")))[0] == SMALL


# ------------------------------------------------------------------ size, type, checksum


async def test_a_declared_length_above_the_limit_is_refused_before_the_body(
    server: ArtifactServer, client: httpx.AsyncClient
) -> None:
    failure = await refusal(client, server.url("/oversized-declared"))
    assert (failure.reason, failure.permanent) == ("oversized", True)


async def test_a_chunked_body_is_cut_off_at_the_limit(server: ArtifactServer, client: httpx.AsyncClient) -> None:
    policy = dataclasses.replace(POLICY, max_bytes=MB)
    received = 0
    with pytest.raises(FetchRefused) as caught:
        async with open_artifact(
            client, server.url("/oversized-chunked"), "video", policy, expected_size=None, expected_sha256=None
        ) as download:
            assert download.declared_length is None
            async for chunk in download.chunks(64 * 1024):
                received += len(chunk)
    assert (caught.value.reason, caught.value.permanent) == ("oversized", True)
    assert received <= MB


@pytest.mark.parametrize("path", ["/wrong-type", "/gzipped"])
async def test_an_unexpected_type_or_encoding_is_refused(
    server: ArtifactServer, client: httpx.AsyncClient, path: str
) -> None:
    failure = await refusal(client, server.url(path))
    assert (failure.reason, failure.permanent) == ("wrong_content_type", True)


async def test_a_type_of_another_kind_is_refused(server: ArtifactServer, client: httpx.AsyncClient) -> None:
    assert (await refusal(client, server.url("/small"), "video")).reason == "wrong_content_type"


async def test_a_short_body_is_truncated(server: ArtifactServer, client: httpx.AsyncClient) -> None:
    failure = await refusal(client, server.url("/truncated"))
    assert (failure.reason, failure.permanent) == ("truncated", False)


async def test_a_declared_length_other_than_expected_is_refused_before_the_body(
    server: ArtifactServer, client: httpx.AsyncClient
) -> None:
    failure = await refusal(client, server.url("/small"), "chat", expected_size=len(SMALL) + 1)
    assert (failure.reason, failure.permanent) == ("size_mismatch", False)


async def test_a_chunked_body_of_another_size_is_refused_at_the_end(
    server: ArtifactServer, client: httpx.AsyncClient
) -> None:
    failure = await refusal(client, server.url("/small-chunked"), "chat", expected_size=len(SMALL) - 1)
    assert failure.reason == "size_mismatch"


class Writer:
    """Stands for the encrypted object writer: commits on a clean exit, aborts otherwise."""

    def __init__(self) -> None:
        self.written = 0
        self.outcome = ""

    async def __aenter__(self) -> Writer:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.outcome = "aborted" if exc else "committed"


async def test_a_checksum_mismatch_aborts_the_writer_after_the_last_chunk(
    server: ArtifactServer, client: httpx.AsyncClient
) -> None:
    writer = Writer()
    with pytest.raises(FetchRefused) as caught:
        async with (
            open_artifact(
                client, server.url("/small"), "chat", POLICY, expected_size=len(SMALL), expected_sha256="0" * 64
            ) as download,
            writer,
        ):
            async for chunk in download.chunks(1000):
                writer.written += len(chunk)
    assert (caught.value.reason, caught.value.permanent) == ("checksum_mismatch", False)
    assert (writer.written, writer.outcome) == (len(SMALL), "aborted")
    with pytest.raises(RuntimeError):
        _ = download.sha256


# ------------------------------------------------------------------ status and network


@pytest.mark.parametrize(
    ("path", "reason", "permanent", "retry_after_s"),
    [
        ("/missing", "not_found", False, None),
        ("/gone", "not_found", False, None),
        ("/busy", "upstream_error", False, 120.0),
        ("/throttled", "upstream_error", False, 7.0),
        ("/forbidden", "refused", True, None),
        ("/partial", "refused", True, None),
        ("/redirect-nowhere", "refused", True, None),
    ],
)
async def test_statuses(
    server: ArtifactServer,
    client: httpx.AsyncClient,
    path: str,
    reason: str,
    permanent: bool,
    retry_after_s: float | None,
) -> None:
    failure = await refusal(client, server.url(path + "?token=SECRET"))
    assert (failure.reason, failure.permanent, failure.retry_after_s) == (reason, permanent, retry_after_s)
    assert path in failure.detail


async def test_a_stall_mid_body_is_unreachable(server: ArtifactServer) -> None:
    policy = dataclasses.replace(POLICY, read_timeout_s=0.3)
    async with make_client(policy) as client:
        failure = await refusal(client, server.url("/stalled"), policy=policy)
    assert (failure.reason, failure.permanent) == ("unreachable", False)


async def test_a_connection_closed_without_answer_is_unreachable(
    server: ArtifactServer, client: httpx.AsyncClient
) -> None:
    assert (await refusal(client, server.url("/hang-up"))).reason == "unreachable"


async def test_nothing_listening_is_unreachable(client: httpx.AsyncClient) -> None:
    async with ArtifactServer() as closed:
        url = closed.url("/good")
    failure = await refusal(client, url)
    assert (failure.reason, failure.permanent) == ("unreachable", False)


# ------------------------------------------------------------------ redirects


async def test_redirects_within_the_policy_are_followed(server: ArtifactServer, client: httpx.AsyncClient) -> None:
    assert (await fetch(client, server.url("/redirect-twice")))[0] == SMALL
    assert server.paths() == ["/redirect-twice", "/redirect", "/small"]
    assert server.requests[-1].query == "token=next-secret"


async def test_a_redirect_to_another_allowed_host_is_followed(
    server: ArtifactServer, client: httpx.AsyncClient
) -> None:
    assert (await fetch(client, server.url("/redirect-localhost")))[0] == SMALL


async def test_a_redirect_to_a_host_not_allowed_is_refused(server: ArtifactServer, client: httpx.AsyncClient) -> None:
    failure = await refusal(client, server.url("/redirect-away"))
    assert (failure.reason, failure.permanent) == ("forbidden_host", True)
    assert "evil.example.net" in failure.detail


async def test_a_redirect_to_plain_http_on_an_https_only_host_is_refused(server: ArtifactServer) -> None:
    policy = dataclasses.replace(POLICY, http_hosts=frozenset({"127.0.0.1"}))
    async with make_client(policy) as client:
        failure = await refusal(client, server.url("/redirect-localhost"), policy=policy)
    assert failure.reason == "forbidden_scheme"
    assert server.paths() == ["/redirect-localhost"]


async def test_a_redirect_loop_ends(server: ArtifactServer, client: httpx.AsyncClient) -> None:
    failure = await refusal(client, server.url("/loop"))
    assert (failure.reason, failure.permanent) == ("too_many_redirects", True)
    assert server.paths() == ["/loop"] * (POLICY.max_redirects + 1)


async def test_no_redirect_is_followed_when_none_are_allowed(server: ArtifactServer) -> None:
    policy = dataclasses.replace(POLICY, max_redirects=0)
    async with make_client(policy) as client:
        assert (await refusal(client, server.url("/redirect"), policy=policy)).reason == "too_many_redirects"


# ------------------------------------------------------------------ addresses


async def test_a_host_resolving_to_loopback_needs_to_be_private(server: ArtifactServer) -> None:
    policy = dataclasses.replace(POLICY, private_hosts=frozenset({"127.0.0.1"}))
    async with make_client(policy) as client:
        failure = await refusal(client, server.url("/small", host="localhost"), policy=policy)
        assert (failure.reason, failure.permanent) == ("forbidden_address", True)
        # ...also when a redirect leads there.
        failure = await refusal(client, server.url("/redirect-localhost"), policy=policy)
        assert failure.reason == "forbidden_address"
    assert server.paths() == ["/redirect-localhost"]


async def test_an_ip_literal_outside_private_hosts_is_refused_at_connect(server: ArtifactServer) -> None:
    policy = dataclasses.replace(POLICY, private_hosts=frozenset())
    async with make_client(policy) as client:
        assert (await refusal(client, server.url("/small"), policy=policy)).reason == "forbidden_address"
    assert server.requests == []


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/?token=SECRET", "http://[fd00:ec2::254]/"])
async def test_metadata_addresses_are_refused_even_when_listed(url: str) -> None:
    listed = frozenset({"169.254.169.254", "fd00:ec2::254"})
    policy = dataclasses.replace(POLICY, allowed_hosts=listed, http_hosts=listed, private_hosts=listed)
    async with make_client(policy) as client:
        failure = await refusal(client, url, policy=policy)
    assert (failure.reason, failure.permanent) == ("forbidden_address", True)
    assert "metadata" in failure.detail


async def test_an_https_redirect_to_a_plain_server_fails_as_unreachable(server: ArtifactServer) -> None:
    # A TLS handshake with a server that speaks none (it waits for a request line, and the
    # handshake times out): a network failure, not a refusal.
    policy = dataclasses.replace(POLICY, connect_timeout_s=0.3)
    async with make_client(policy) as client:
        assert (await refusal(client, server.url("/redirect-https"), policy=policy)).reason == "unreachable"
