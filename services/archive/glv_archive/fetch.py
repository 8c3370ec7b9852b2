"""Download one artifact from the meeting platform, safely and as a stream.

Artifact URLs come from the platform, so they are checked twice: the URL (scheme, host,
no credentials) before every request and every redirect, and the addresses its host
resolves to when the connection is made, which is also where the connection goes (no
SSRF, no DNS rebinding between check and use). The body is streamed, counted and hashed
as it arrives; the caller writes it away chunk by chunk and learns of a bad size or
checksum from inside the iteration, before it commits anything.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ipaddress
import re
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal, cast

import httpcore
import httpx

from glv_archive.settings import ArchiveSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

Reason = Literal[
    "forbidden_scheme",
    "forbidden_host",
    "forbidden_address",
    "too_many_redirects",
    "oversized",
    "wrong_content_type",
    "truncated",
    "size_mismatch",
    "checksum_mismatch",
    "not_found",
    "upstream_error",
    "refused",
    "unreachable",
]
# Trying again cannot help these: the URL, the platform's answer or the file itself is wrong.
# A transfer can be corrupted or cut, and a recording may still be encoding, so the others
# are retried (a bounded number of times, by the job).
PERMANENT_REASONS: frozenset[Reason] = frozenset(
    {
        "forbidden_scheme",
        "forbidden_host",
        "forbidden_address",
        "too_many_redirects",
        "oversized",
        "wrong_content_type",
        "refused",
    }
)


class FetchRefused(Exception):
    """Why an artifact was not (completely) fetched.

    `detail` names at most scheme, host, port and path: signed URLs carry their tokens in
    the query string, and details end up in logs and events.
    """

    def __init__(self, reason: Reason, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail
        self.permanent = reason in PERMANENT_REASONS
        # What the platform asked for with Retry-After (429, 5xx), if anything.
        self.retry_after_s = retry_after_s


# ------------------------------------------------------------------ policy

DEFAULT_MAX_BYTES = 4 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """What may be fetched, from where, and how much. Host lists are normalised on creation
    (lower case, no trailing dot, IP literals in their canonical form)."""

    allowed_hosts: frozenset[str] = frozenset()
    http_hosts: frozenset[str] = frozenset()
    private_hosts: frozenset[str] = frozenset()
    max_bytes: int = DEFAULT_MAX_BYTES
    max_redirects: int = 3
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    # Accepted content types (lower case, no parameters) by kind: "video", "audio", "chat".
    content_types: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("allowed_hosts", "http_hosts", "private_hosts"):
            object.__setattr__(self, name, frozenset(_normalise_pattern(h) for h in getattr(self, name)))
        types = {kind: frozenset(t.strip().lower() for t in accepted) for kind, accepted in self.content_types.items()}
        object.__setattr__(self, "content_types", types)
        if self.max_bytes <= 0 or self.max_redirects < 0:
            raise ValueError("max_bytes must be positive and max_redirects not negative")

    @classmethod
    def from_settings(cls, settings: ArchiveSettings) -> FetchPolicy:
        if settings.environment == "production" and settings.fetch_http_hosts:
            raise ValueError(
                "GLV_ARCHIVE_FETCH_HTTP_HOSTS must be empty in production: artifacts are fetched over https only"
            )
        return cls(
            allowed_hosts=frozenset(settings.fetch_allowed_hosts),
            http_hosts=frozenset(settings.fetch_http_hosts),
            private_hosts=frozenset(settings.fetch_private_hosts),
            max_bytes=settings.fetch_max_bytes,
            max_redirects=settings.fetch_max_redirects,
            connect_timeout_s=settings.fetch_connect_timeout_s,
            read_timeout_s=settings.fetch_read_timeout_s,
            content_types={
                "video": frozenset(settings.video_types),
                "audio": frozenset(settings.audio_types),
                "chat": frozenset(settings.chat_types),
            },
        )


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _normalise_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    literal = _ip_literal(host)
    return str(literal) if literal is not None else host


def _normalise_pattern(pattern: str) -> str:
    host = _normalise_host(pattern)
    if not host or "*" in host.removeprefix("*."):
        raise ValueError(f"not a host or *.domain pattern: {pattern!r}")
    return host


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """`host` (normalised) is listed exactly, or under a listed "*.domain" (which does not
    match the domain itself). An IP literal only ever matches exactly."""
    if host in patterns:
        return True
    if _ip_literal(host) is not None:
        return False
    return any(p.startswith("*.") and host.endswith(p[1:]) for p in patterns)


def describe(url: httpx.URL) -> str:
    """The URL's scheme, host and last path segment: safe for logs and events. Not the rest:
    platforms put access tokens in the query and in the path too (/recordings/<token>/x.mp4)."""
    name = url.path.rstrip("/").rsplit("/", 1)[-1][:64]
    middle = "/.../" if url.path.count("/") > 1 else "/"
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{middle}{name}"


def check_url(url: str | httpx.URL, policy: FetchPolicy) -> httpx.URL:
    """The URL, if the policy allows fetching it; else FetchRefused (forbidden_scheme or
    forbidden_host). Addresses are checked later, at connect time."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise FetchRefused("forbidden_host", "not a valid URL") from None
    where = describe(parsed)
    if parsed.scheme not in ("https", "http"):
        raise FetchRefused("forbidden_scheme", f"only https is fetched: {parsed.scheme or 'no'} scheme")
    if parsed.userinfo:
        raise FetchRefused("forbidden_host", f"credentials in the URL {where}")
    host = _normalise_host(parsed.raw_host.decode("ascii"))
    if not host:
        raise FetchRefused("forbidden_host", f"no host in {where}")
    if not host_matches(host, policy.allowed_hosts):
        kind = "IP address" if _ip_literal(host) is not None else "host"
        raise FetchRefused("forbidden_host", f"{kind} {host} is not allowed: {where}")
    if parsed.scheme == "http" and not host_matches(host, policy.http_hosts):
        raise FetchRefused("forbidden_scheme", f"plain http to {host} is not allowed: {where}")
    return parsed.copy_with(fragment=None)


def resolve_redirect(current: httpx.URL, location: str, policy: FetchPolicy) -> httpx.URL:
    """Where a redirect's Location leads from `current`, checked like the first URL."""
    try:
        target = current.join(location)
    except httpx.InvalidURL:
        raise FetchRefused("forbidden_host", f"invalid redirect from {describe(current)}") from None
    return check_url(target, policy)


# ------------------------------------------------------------------ addresses


class AddressClass(Enum):
    PUBLIC = "public"
    PRIVATE = "private"  # loopback, private, link-local, CGNAT, multicast, reserved...
    METADATA = "metadata"  # cloud instance metadata: never, whatever the host


# AWS/GCP/Azure/OpenStack use 169.254.169.254 (AWS also fd00:ec2::254 on Nitro); Alibaba
# 100.100.100.200. They hand out the instance's cloud credentials to whoever asks.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to (mapped, 6to4, Teredo client, NAT64)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def classify_address(address: str | IPAddress) -> AddressClass:
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    if ip in METADATA_ADDRESSES:
        return AddressClass.METADATA
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        embedded = classify_address(inner)
        if embedded is not AddressClass.PUBLIC:
            return embedded
    # is_global is False for private, loopback, link-local, unspecified, CGNAT (100.64/10)
    # and most reserved ranges; multicast counts as global, so it is named here.
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local:
        return AddressClass.PRIVATE
    return AddressClass.PUBLIC


def check_addresses(host: str, addresses: Sequence[str | IPAddress], policy: FetchPolicy) -> list[IPAddress]:
    """The addresses `host` resolved to, if every one may be connected to; else
    FetchRefused("forbidden_address"). One bad address refuses them all: a name that
    resolves to a public and a private address is an attack, not a platform."""
    host = _normalise_host(host)
    private_ok = host_matches(host, policy.private_hosts)
    checked: list[IPAddress] = []
    for address in addresses:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        kind = classify_address(ip)
        if kind is AddressClass.METADATA:
            raise FetchRefused("forbidden_address", f"{host} resolves to the cloud metadata address {ip}")
        if kind is AddressClass.PRIVATE and not private_ok:
            raise FetchRefused("forbidden_address", f"{host} resolves to the non-public address {ip}")
        if ip not in checked:
            checked.append(ip)
    if not checked:
        raise FetchRefused("unreachable", f"{host} resolves to no address")
    return checked


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that resolves host names itself, checks every address and
    connects to a checked address, never to the name (which could resolve anew)."""

    def __init__(self, policy: FetchPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        addresses = check_addresses(host, await _resolve(host, port, timeout), self._policy)
        failure: Exception | None = None
        # Each address in turn (a host with an unreachable IPv6 address still works), all
        # within the one connect timeout. TLS later verifies `host`, not the address:
        # httpcore passes the origin's host name to start_tls as server_hostname.
        for ip in addresses:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise httpcore.ConnectTimeout(f"connecting to {host} timed out")
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout=left, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # check_addresses returns at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("forbidden_address", "unix sockets are not fetched from")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int, limit_s: float | None) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(limit_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
    except OSError as exc:  # socket.gaierror included
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


# ------------------------------------------------------------------ client

# httpcore's exceptions as httpx's, most specific first (what httpx's own transport does).
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _EXCEPTIONS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx transport over an httpcore pool that connects through GuardedBackend.

    httpx 0.28's AsyncHTTPTransport takes no network backend. Swapping its private `_pool`
    would be shorter, but if httpx ever renamed that attribute the assignment would still
    succeed and silently leave an unguarded pool; this class uses only public httpx and
    httpcore API, and costs the request/response conversion and the exception mapping.
    """

    def __init__(self, policy: FetchPolicy, *, max_connections: int = 16) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            # certifi's CAs, or SSL_CERT_FILE/SSL_CERT_DIR when set (as httpx does it): a
            # platform on the office's network may use the office's own CA.
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


# Compressed bodies would be stored compressed and hashed as such: ask for none.
_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "glv-archive"}


def make_client(policy: FetchPolicy) -> httpx.AsyncClient:
    """A client that only connects to checked addresses, ignores proxy settings in the
    environment (they would bypass the address check) and follows no redirect itself."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy),
        timeout=httpx.Timeout(
            connect=policy.connect_timeout_s,
            # The longest silence while a body arrives, not the whole transfer: the job
            # bounds that (FETCH_TIMEOUT_S).
            read=policy.read_timeout_s,
            write=policy.read_timeout_s,
            pool=policy.connect_timeout_s,
        ),
        headers=_HEADERS,
        follow_redirects=False,
        trust_env=False,
    )


# ------------------------------------------------------------------ download

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _transport_failure(exc: httpx.TransportError, where: str, *, during_body: bool) -> FetchRefused:
    # httpx's messages name no URL; `from None` at the raise keeps its request out of logs.
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if during_body and isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return FetchRefused("truncated", f"body of {where} cut short ({what})")
    return FetchRefused("unreachable", f"{where}: {what}")


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by a Retry-After header (delay in seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _status_failure(response: httpx.Response, where: str) -> FetchRefused:
    status = response.status_code
    if status in (404, 410):
        return FetchRefused("not_found", f"{where} answered {status}")
    if status == 429 or status >= 500:
        wait = retry_after(response.headers.get("retry-after"))
        return FetchRefused("upstream_error", f"{where} answered {status}", retry_after_s=wait)
    return FetchRefused("refused", f"{where} answered {status}")


async def _get(client: httpx.AsyncClient, url: httpx.URL) -> httpx.Response:
    request = client.build_request("GET", url, headers=_HEADERS)
    try:
        return await client.send(request, stream=True, follow_redirects=False)
    except httpx.TransportError as exc:
        raise _transport_failure(exc, describe(url), during_body=False) from None


async def _follow(client: httpx.AsyncClient, url: str, policy: FetchPolicy) -> tuple[httpx.Response, httpx.URL]:
    """The first response that is not a redirect, and its URL."""
    current = check_url(url, policy)
    followed = 0
    while True:
        response = await _get(client, current)
        if response.status_code not in _REDIRECTS:
            return response, current
        await response.aclose()
        location = response.headers.get("location")
        if not location:
            raise FetchRefused("refused", f"{describe(current)} redirected ({response.status_code}) nowhere")
        if followed == policy.max_redirects:
            raise FetchRefused(
                "too_many_redirects", f"more than {policy.max_redirects} redirects, the last from {describe(current)}"
            )
        current = resolve_redirect(current, location, policy)
        followed += 1


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _content_length(response: httpx.Response) -> int | None:
    # h11 has already refused a malformed or contradictory Content-Length.
    value = response.headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


class Download:
    """One artifact's response, checked as far as its headers allow; the body is read by
    `chunks()` exactly once."""

    def __init__(
        self,
        response: httpx.Response,
        url: httpx.URL,
        policy: FetchPolicy,
        *,
        expected_size: int | None,
        expected_sha256: str | None,
    ) -> None:
        self.url = url
        self.content_type = _media_type(response.headers.get("content-type"))
        self.declared_length = _content_length(response)
        self._response = response
        self._max_bytes = policy.max_bytes
        self._expected_size = expected_size
        self._expected_sha256 = expected_sha256
        self._hash = hashlib.sha256()
        self._size = 0
        self._started = False
        self._complete = False

    @property
    def size(self) -> int:
        """Bytes received so far; the artifact's size once chunks() is exhausted."""
        return self._size

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the body, once chunks() is exhausted."""
        if not self._complete:
            raise RuntimeError("the body has not been read to its end")
        return self._hash.hexdigest()

    @property
    def complete(self) -> bool:
        return self._complete

    async def chunks(self, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The body, chunk by chunk, as it arrives. Raises FetchRefused mid-way (oversized,
        truncated, unreachable) or after the last chunk (size_mismatch,
        checksum_mismatch): a caller writing inside `async with writer:` aborts the write."""
        if self._started:
            raise RuntimeError("the body can be read only once")
        self._started = True
        where = describe(self.url)
        # Raw bytes: no decoding (none was asked for, and anything else was refused).
        body = cast(AsyncGenerator[bytes, None], self._response.aiter_raw(chunk_size))
        try:
            while True:
                try:
                    chunk = await anext(body)
                except StopAsyncIteration:
                    break
                except httpx.TransportError as exc:
                    raise _transport_failure(exc, where, during_body=True) from None
                if self._size + len(chunk) > self._max_bytes:
                    raise FetchRefused("oversized", f"{where} is larger than {self._max_bytes} bytes")
                self._size += len(chunk)
                self._hash.update(chunk)
                yield chunk
        finally:
            await body.aclose()
        self._check_end(where)
        self._complete = True

    def _check_headers(self, status: int, headers: httpx.Headers, accepted: frozenset[str]) -> None:
        where = describe(self.url)
        if status != 200:
            # 206 and other 2xx are not the whole artifact either.
            raise _status_failure(self._response, where)
        encoding = _media_type(headers.get("content-encoding"))
        if encoding not in ("", "identity"):
            raise FetchRefused("wrong_content_type", f"{where} is {encoding}-encoded although identity was asked for")
        if self.content_type not in accepted:
            raise FetchRefused("wrong_content_type", f"{where} is {self.content_type or 'untyped'}")
        length = self.declared_length
        if length is not None and length > self._max_bytes:
            raise FetchRefused("oversized", f"{where} declares {length} bytes, more than {self._max_bytes}")
        if length is not None and self._expected_size is not None and length != self._expected_size:
            raise FetchRefused("size_mismatch", f"{where} declares {length} bytes, expected {self._expected_size}")

    def _check_end(self, where: str) -> None:
        if self.declared_length is not None and self._size != self.declared_length:
            raise FetchRefused("truncated", f"{where} sent {self._size} of {self.declared_length} bytes")
        if self._expected_size is not None and self._size != self._expected_size:
            raise FetchRefused("size_mismatch", f"{where} has {self._size} bytes, expected {self._expected_size}")
        digest = self._hash.hexdigest()
        if self._expected_sha256 is not None and digest != self._expected_sha256:
            raise FetchRefused("checksum_mismatch", f"{where} has SHA-256 {digest}, expected {self._expected_sha256}")


@asynccontextmanager
async def open_artifact(
    client: httpx.AsyncClient,
    url: str,
    kind: str,
    policy: FetchPolicy,
    *,
    expected_size: int | None,
    expected_sha256: str | None,
) -> AsyncIterator[Download]:
    """Request an artifact (following checked redirects) and check what its headers say:
    status, content type, declared length. Raises FetchRefused; the response is closed on
    leaving, whether or not the body was read. `client` must come from make_client: only
    its transport checks the addresses it connects to."""
    accepted = policy.content_types.get(kind)
    if accepted is None:
        raise ValueError(f"unknown artifact kind {kind!r}")
    if expected_sha256 is not None:
        expected_sha256 = expected_sha256.strip().lower()
        if not _SHA256.fullmatch(expected_sha256):
            raise ValueError("expected_sha256 must be 64 hex digits")
    response, final = await _follow(client, url, policy)
    try:
        download = Download(response, final, policy, expected_size=expected_size, expected_sha256=expected_sha256)
        download._check_headers(response.status_code, response.headers, accepted)
        yield download
    finally:
        await response.aclose()
