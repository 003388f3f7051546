"""The outbound network guard: every spelling of a non-public address is refused, by its
resolved address, at check time and again at connect time (pinned), and on every redirect."""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx
import pytest

from components.base import HttpPolicy
from components.errors import ToolFailure
from components.netguard import (
    EgressRefused,
    check_url,
    guarded_client,
    is_public_address,
    parse_url,
    resolve_checked,
    wire_logs_redacted,
)
from tests.loopback.http_receiver import HttpReceiver

PUBLIC_V4 = "93.184.216.34"
_real_getaddrinfo = socket.getaddrinfo

NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",
    "100.127.255.254",
    "169.254.169.254",
    "169.254.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fd00::1",
    "fc00::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:0:7f00:1",
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::808:808",
    "2002:7f00:1::1",
    "2002:a00:1::1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", PUBLIC_V4, "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> dict[str, int]:
    """Answer `answers[host]` in turn (the last one repeats); other hosts resolve for real."""
    calls: dict[str, int] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in answers:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        count = calls[name] = calls.get(name, 0) + 1
        address = answers[name][min(count, len(answers[name])) - 1]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as running:
        running.route("/", body={"hello": "world"})
        yield running


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",
    "0x7f000001",
    "0x7F.1",
    "0177.0.0.1",
    "0177.1",
    "017700000001",
    "127.1",
    "127.000.000.001",
    "0",
    "0.0.0.0",
    "localhost",
    "LOCALHOST",
    "LocalHost",
    "localhost.",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::]",
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_refused(receiver: HttpReceiver, host: str) -> None:
    url = f"http://{host}:{receiver.port}/"
    with pytest.raises(EgressRefused):
        check_url(url, HttpPolicy())
    # httpx itself rejects a few spellings (octal dotted quads, full-width digits) first.
    with guarded_client(HttpPolicy()) as client, pytest.raises((EgressRefused, httpx.InvalidURL)):
        client.get(url)
    assert receiver.requests == []


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "10.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "172.20.10.5",
        "192.168.0.1",
        "100.64.0.1",
        "224.0.0.251",
        "[fd00::1]",
        "[fe80::1]",
        "[fc00::1]",
        "[ff02::1]",
        "[::ffff:169.254.169.254]",
        "[::ffff:a9fe:a9fe]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:a9fe:a9fe::1]",
        "2852039166",
        "0xa9fea9fe",
    ],
)
def test_private_link_local_and_embedded_forms_are_refused(host: str) -> None:
    with pytest.raises(EgressRefused, match="may not reach"):
        check_url(f"http://{host}/latest/meta-data/", HttpPolicy())


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.0.0.5", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.1.1", "CGNAT"),
        ("fd12:3456::1", "private"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
    ],
)
def test_names_resolving_to_non_public_addresses_are_refused(
    monkeypatch: pytest.MonkeyPatch, address: str, kind: str
) -> None:
    fake_dns(monkeypatch, {"internal.example": [address]})
    with pytest.raises(EgressRefused, match="may not reach") as refused:
        check_url("https://internal.example/path", HttpPolicy())
    assert kind in str(refused.value)
    assert "allowed hosts" in str(refused.value)


def test_one_non_public_address_among_public_ones_is_enough_to_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_V4, port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(EgressRefused, match=r"127\.0\.0\.1 \(loopback\)"):
        resolve_checked("mixed.example", 443, HttpPolicy())


def test_unicode_and_uppercase_hosts_are_resolved_in_their_ascii_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = fake_dns(
        monkeypatch, {"xn--bcher-kva.example": ["127.0.0.1"], "shop.example": ["10.0.0.2"]}
    )
    with pytest.raises(EgressRefused, match="loopback"):
        check_url("http://BÜCHER.example/", HttpPolicy())
    with pytest.raises(EgressRefused, match="private"):
        check_url("http://SHOP.Example/", HttpPolicy())
    assert calls == {"xn--bcher-kva.example": 1, "shop.example": 1}


def test_public_names_pass_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"api.example": [PUBLIC_V4]})
    check_url("https://api.example/v1/orders?x=1", HttpPolicy())
    assert resolve_checked("api.example", 443, HttpPolicy()) == [PUBLIC_V4]


def test_unresolvable_hosts_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(EgressRefused, match="could not be resolved"):
        check_url("https://nowhere.example/", HttpPolicy())


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/file", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://example.com/", "scheme 'gopher'"),
        ("//example.com/", "scheme ''"),
        ("http:///path", "no host"),
        ("http://example.com:99999/", "invalid port"),
        ("http://example.com:0/", "invalid port"),
        ("http://exa mple.com/", "not a valid host name"),
        ("http://[::1/", "not a valid URL"),
        ("http://example.com:http/", "not a valid URL"),
    ],
)
def test_malformed_urls_are_refused(url: str, fragment: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_url(url, HttpPolicy())
    assert fragment in str(refused.value)


def test_user_info_is_refused_without_echoing_the_password() -> None:
    with pytest.raises(EgressRefused, match="user name or password") as refused:
        parse_url("https://admin:hunter2-pass@api.example.com/orders")
    assert "hunter2-pass" not in str(refused.value)
    assert "admin" not in str(refused.value)


def test_refusals_are_tool_failures() -> None:
    with pytest.raises(ToolFailure):
        check_url("http://127.0.0.1/", HttpPolicy())


def test_allowed_host_and_port_is_reached(receiver: HttpReceiver) -> None:
    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}))
    check_url(receiver.url, policy)
    with guarded_client(policy) as client:
        answer = client.get(receiver.url_for("/"))
    assert answer.json() == {"hello": "world"}
    assert [r.path for r in receiver.requests] == ["/"]


@pytest.mark.parametrize("entry", ["127.0.0.1", "127.0.0.1:{port}", " 127.0.0.1:{port} "])
def test_allow_list_entries_by_host_or_host_and_port(receiver: HttpReceiver, entry: str) -> None:
    policy = HttpPolicy(allow_hosts=frozenset({entry.format(port=receiver.port)}))
    with guarded_client(policy) as client:
        assert client.get(receiver.url_for("/")).status_code == 200
    assert len(receiver.requests) == 1


def test_allow_list_matches_the_name_case_insensitively(receiver: HttpReceiver) -> None:
    policy = HttpPolicy(allow_hosts=frozenset({f"localhost:{receiver.port}"}))
    with guarded_client(policy) as client:
        assert client.get(f"http://LocalHost:{receiver.port}/").status_code == 200
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:{other}/", "http://2130706433:{port}/", "http://127.1:{port}/"],
)
def test_allow_list_does_not_open_other_ports_or_spellings(
    receiver: HttpReceiver, url: str
) -> None:
    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}))
    other = receiver.port + 1 if receiver.port < 65535 else receiver.port - 1
    with pytest.raises(EgressRefused):
        check_url(url.format(port=receiver.port, other=other), policy)
    assert receiver.requests == []


def test_dns_rebinding_between_check_and_connect_is_refused(
    monkeypatch: pytest.MonkeyPatch, receiver: HttpReceiver
) -> None:
    calls = fake_dns(monkeypatch, {"rebind.example": [PUBLIC_V4, "127.0.0.1"]})
    url = f"http://rebind.example:{receiver.port}/"
    check_url(url, HttpPolicy())  # first answer: public
    with guarded_client(HttpPolicy()) as client, pytest.raises(EgressRefused, match="loopback"):
        client.get(url)  # second answer: loopback
    assert receiver.requests == []
    assert calls["rebind.example"] == 2


def test_the_connection_goes_to_the_checked_address_not_a_new_lookup(
    monkeypatch: pytest.MonkeyPatch, receiver: HttpReceiver
) -> None:
    """A naive guard checks, then lets the socket resolve again (and reach loopback)."""
    calls = fake_dns(monkeypatch, {"pinned.example": [PUBLIC_V4, "127.0.0.1"]})
    connected: list[str] = []

    def connect_tcp(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        connected.append(host)
        raise httpcore.ConnectError("test: no real connection to public addresses")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    with guarded_client(HttpPolicy()) as client, pytest.raises(httpx.ConnectError):
        client.get(f"http://pinned.example:{receiver.port}/")
    assert connected == [PUBLIC_V4]
    assert calls["pinned.example"] == 1
    assert receiver.requests == []


def test_tls_checks_the_host_name_while_connecting_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"api.example": [PUBLIC_V4]})
    seen: dict[str, Any] = {}

    class Stream(httpcore.NetworkStream):
        def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.NetworkStream:
            seen["sni"] = server_hostname
            seen["verify"] = (ssl_context.verify_mode, ssl_context.check_hostname)
            raise httpcore.ConnectError("test: stop before the handshake")

        def close(self) -> None:
            seen["closed"] = True

    def connect_tcp(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        seen["address"] = (host, port)
        return Stream()

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    with guarded_client(HttpPolicy()) as client, pytest.raises(httpx.ConnectError):
        client.get("https://api.example/v1/orders")
    assert seen["address"] == (PUBLIC_V4, 443)
    assert seen["sni"] == "api.example"
    assert seen["verify"] == (ssl.CERT_REQUIRED, True)


def test_wire_log_redaction_is_scoped_to_the_block(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wire = logging.getLogger("httpcore.http11")
    with wire_logs_redacted(["s3cr3t-value"]):
        wire.debug("response headers %s", [("X-Echo", "s3cr3t-value")])
    wire.debug("after %s", "s3cr3t-value")
    assert "s3cr3t-value" not in caplog.records[0].getMessage()
    assert "[redacted]" in caplog.records[0].getMessage()
    assert caplog.records[1].getMessage() == "after s3cr3t-value"
    assert wire.filters == []


def test_redirects_are_not_followed_by_default(receiver: HttpReceiver) -> None:
    with HttpReceiver() as target:
        receiver.route("/go", redirect_to=target.url_for("/"))
        policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port, target.host_port}))
        with guarded_client(policy) as client:
            answer = client.get(receiver.url_for("/go"))
        assert answer.status_code == 302
        assert target.requests == []


@pytest.mark.parametrize(
    "target_url",
    [
        "http://127.0.0.1:{port}/",
        "http://2130706433:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
    ],
)
def test_a_followed_redirect_to_a_non_public_address_is_refused(
    receiver: HttpReceiver, target_url: str
) -> None:
    with HttpReceiver() as target:
        receiver.route("/go", redirect_to=target_url.format(port=target.port))
        policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}))
        with (
            guarded_client(policy, max_redirects=3) as client,
            pytest.raises((EgressRefused, httpx.UnsupportedProtocol)),
        ):
            client.get(receiver.url_for("/go"))
        assert target.requests == []
    assert [r.path for r in receiver.requests] == ["/go"]


def test_followed_redirects_are_capped_at_the_limit(receiver: HttpReceiver) -> None:
    for hop in range(5):
        receiver.route(f"/hop{hop}", redirect_to=receiver.url_for(f"/hop{hop + 1}"))
    receiver.route("/hop2", redirect_to=receiver.url_for("/"))
    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}))
    with guarded_client(policy, max_redirects=3) as client:
        assert client.get(receiver.url_for("/hop0")).json() == {"hello": "world"}
    with guarded_client(policy, max_redirects=2) as client, pytest.raises(httpx.TooManyRedirects):
        client.get(receiver.url_for("/hop0"))
    with pytest.raises(ValueError, match="max_redirects"):
        guarded_client(policy, max_redirects=4)


def test_environment_proxies_are_ignored(
    monkeypatch: pytest.MonkeyPatch, receiver: HttpReceiver
) -> None:
    with HttpReceiver() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}))
        with guarded_client(policy) as client:
            assert client.get(receiver.url_for("/")).status_code == 200
        assert proxy.requests == []
    assert len(receiver.requests) == 1


def test_policy_timeout_applies_to_the_client() -> None:
    with guarded_client(HttpPolicy(timeout_s=1.5)) as client:
        assert client.timeout == httpx.Timeout(1.5)
        assert client.follow_redirects is False
