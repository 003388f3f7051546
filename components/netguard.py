"""Outbound network guard: only public addresses, unless a workspace allows a host.

Every outgoing HTTP request of a tool or a webhook goes through here. The guard never trusts
how a host is spelled (``2130706433``, ``0x7f000001``, ``127.1``, ``[::ffff:127.0.0.1]``…):
it resolves the name with ``getaddrinfo`` and refuses when *any* resolved address is not a
public unicast address, including IPv6 forms that embed an IPv4 address (mapped, NAT64,
6to4, Teredo). `guarded_client` does that check again inside the connection itself and then
connects to the very address it checked, so DNS that changes its answer between the check
and the connect (rebinding) cannot switch the target. TLS still verifies the original host
name. Redirects are not followed unless asked for; each followed hop is checked again.
"""

from __future__ import annotations

__all__ = [
    "MAX_REDIRECTS",
    "REDACTED",
    "EgressRefused",
    "address_kind",
    "check_url",
    "guarded_client",
    "is_public_address",
    "parse_url",
    "resolve_checked",
    "wire_logs_redacted",
]

import functools
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import httpcore
import httpx

from components.base import HttpPolicy
from components.errors import ToolFailure

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
REDACTED = "[redacted]"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WIRE_LOGGERS = ("httpcore.connection", "httpcore.http11", "httpcore.http2", "httpx")
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")


class EgressRefused(ToolFailure):
    """The network guard refused an outbound request (the message says why and what to do)."""


def address_kind(ip: IPAddress) -> str:
    """A short name for why an address is not public ("loopback", "private", ...)."""
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("shared (CGNAT)", isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    )
    return next((name for name, hit in checks if hit), "non-public")


def _v4_is_public(ip: ipaddress.IPv4Address) -> bool:
    flagged = (
        ip.is_unspecified
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_private
        or ip.is_reserved
        or ip in _CGNAT
    )
    return ip.is_global and not flagged


def _v6_is_public(ip: ipaddress.IPv6Address) -> bool:
    flagged = (
        ip.is_unspecified
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_site_local
        or ip.is_multicast
        or ip.is_private
        or ip.is_reserved
        or ip in _NAT64_LOCAL
    )
    return ip.is_global and not flagged


def is_public_address(ip: IPAddress) -> bool:
    """True only for a public unicast address; IPv6 forms embedding IPv4 are judged by it."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_is_public(ip)
    if ip.ipv4_mapped is not None:
        return _v4_is_public(ip.ipv4_mapped)
    if ip in _NAT64:
        return _v4_is_public(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
    embedded = [ip.sixtofour, *(ip.teredo or ())]
    if any(v4 is not None and not _v4_is_public(v4) for v4 in embedded):
        return False
    return _v6_is_public(ip)


def _host_label(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_allowed(host: str, port: int, policy: HttpPolicy) -> bool:
    name = host.lower().rstrip(".")
    label = _host_label(name)
    allowed = {entry.strip().lower() for entry in policy.allow_hosts}
    return bool({name, label, f"{label}:{port}"} & allowed)


def _refusal(host: str, port: int, address: str, kind: str) -> EgressRefused:
    label = _host_label(host)
    return EgressRefused(
        f"host {label!r} resolves to {address} ({kind}), which outbound requests may not "
        f"reach; if this service is meant to be reached, add {label!r} or "
        f"'{label}:{port}' to the workspace's allowed hosts"
    )


def resolve_checked(host: str, port: int, policy: HttpPolicy) -> list[str]:
    """Resolve `host`; return its addresses, or refuse if any of them is not public.

    Hosts listed in ``policy.allow_hosts`` (as ``host`` or ``host:port``) may resolve to
    any address.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        raise EgressRefused(
            f"host {_host_label(host)!r} could not be resolved; check the host name"
        ) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise EgressRefused(f"host {_host_label(host)!r} has no addresses; check the host name")
    if _is_allowed(host, port, policy):
        return addresses
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise _refusal(host, port, address, "unparsable") from None
        if not is_public_address(ip):
            raise _refusal(host, port, address, address_kind(ip))
    return addresses


def _describe(url: httpx.URL) -> str:
    """A URL for messages: no user info, no query, no fragment."""
    port = f":{url.port}" if url.port is not None else ""
    host = _host_label(url.raw_host.decode("ascii", "replace"))
    return f"{url.scheme}://{host}{port}{url.raw_path.split(b'?')[0].decode('ascii', 'replace')}"


def _check_form(url: httpx.URL) -> tuple[str, int]:
    """Scheme, user info, host and port rules; returns (host, port) to resolve."""
    if url.scheme not in _DEFAULT_PORTS:
        raise EgressRefused(
            f"URL scheme {url.scheme!r} is not allowed; use an http:// or https:// URL"
        )
    if url.userinfo:
        raise EgressRefused(
            f"URL {_describe(url)!r} carries a user name or password, which is refused; "
            "send credentials in a secret header instead"
        )
    host = url.raw_host.decode("ascii", "replace")
    port = url.port if url.port is not None else _DEFAULT_PORTS[url.scheme]
    if not host:
        raise EgressRefused("URL has no host; write a full URL like https://api.example.com/")
    if ":" not in host and not _HOST_NAME.fullmatch(host):
        raise EgressRefused(f"{host!r} is not a valid host name; check the URL")
    if not 0 < port < 65536:
        raise EgressRefused(f"URL {_describe(url)!r} has an invalid port; use 1-65535")
    return host, port


def _parse(url: str | httpx.URL) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError, ValueError, TypeError) as exc:
        raise EgressRefused(f"not a valid URL ({exc}); write a full http(s) URL") from None


def parse_url(url: str | httpx.URL) -> httpx.URL:
    """Parse and check an outbound URL's form (http/https, host, port, no user info)."""
    parsed = _parse(url)
    _check_form(parsed)
    return parsed


def check_url(url: str | httpx.URL, policy: HttpPolicy) -> None:
    """Refuse `url` unless its form is valid and its host resolves only to public addresses.

    A passing check does not make a later request safe on its own (DNS may change): send
    the request with `guarded_client`, which checks again and pins the checked address.
    """
    host, port = _check_form(_parse(url))
    resolve_checked(host, port, policy)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks and connects to a checked address (never resolves twice)."""

    def __init__(self, policy: HttpPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_checked(host, port, self._policy)
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                log.debug("connect to %s port %d failed: %s", address, port, exc)
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise EgressRefused("unix sockets are not allowed for outbound requests")


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context (certifi roots), built on first use and shared."""
    return httpx.create_ssl_context(trust_env=False)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the guarded backend and a form check on every request."""

    def __init__(self, policy: HttpPolicy) -> None:
        context = _ssl_context()
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context, network_backend=_GuardedBackend(policy)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _check_form(request.url)
        return super().handle_request(request)


def guarded_client(policy: HttpPolicy, *, max_redirects: int = 0) -> httpx.Client:
    """An httpx client whose every connection is checked and pinned by the guard.

    Redirects are not followed unless `max_redirects` (at most `MAX_REDIRECTS`) is given;
    every followed hop is checked again. httpx drops ``Authorization`` on a redirect to
    another origin but keeps other headers: do not follow redirects with secret headers.
    Environment proxies and ``.netrc`` are ignored.
    """
    if not 0 <= max_redirects <= MAX_REDIRECTS:
        raise ValueError(f"max_redirects must be between 0 and {MAX_REDIRECTS}")
    return httpx.Client(
        transport=_GuardedTransport(policy),
        timeout=httpx.Timeout(policy.timeout_s),
        follow_redirects=max_redirects > 0,
        max_redirects=max_redirects,
        trust_env=False,
    )


class _SecretFilter(logging.Filter):
    """Replaces the given secret values in the HTTP libraries' own log records."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        message = redacted = record.getMessage()
        for secret in self._secrets:
            redacted = redacted.replace(secret, REDACTED)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


@contextmanager
def wire_logs_redacted(secrets: Sequence[str]) -> Iterator[None]:
    """Redact `secrets` from httpx/httpcore log records while a request runs.

    httpcore logs raw response headers at DEBUG, and a service may echo a credential back.
    """
    if not any(secrets):
        yield
        return
    secret_filter = _SecretFilter(secrets)
    loggers = [logging.getLogger(name) for name in _WIRE_LOGGERS]
    for logger in loggers:
        logger.addFilter(secret_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(secret_filter)
