"""OIDC login against a loopback identity provider built from authlib's server parts.

A real authorization-code flow: an httpx "browser" with cookies talks to a small Starlette
relying party (SessionMiddleware + `oidc_routes`, served by uvicorn on 127.0.0.1) and to the
loopback provider (`tests.auth.oidc_provider`); the relying party's authlib client calls the
provider's discovery, JWKS and token endpoints over HTTP. Then every attack: each one ends in
a short 4xx, `on_login` is never called and no account is linked.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from auth.base import Base, utcnow
from auth.oidc import (
    IdTokenRejected,
    OidcIdentity,
    OidcLoginError,
    OidcProvider,
    VerifiedIdentity,
    build_oauth,
    link,
    link_or_find,
    oidc_routes,
    verify_id_token,
)
from auth.tables import User
from components.errors import Conflict
from tests.auth.oidc_provider import Fault, LoopbackServer, TestIdentityProvider, TestUser

CLIENT_ID = "agent-studio"
CLIENT_SECRET = "loopback-client-secret"


# --- the relying party under test -----------------------------------------------------------


@dataclass
class RelyingParty:
    url: str
    db: sessionmaker[Session]
    providers: dict[str, OidcProvider]
    calls: list[VerifiedIdentity] = field(default_factory=list)  # every on_login call
    logins: list[tuple[VerifiedIdentity, str]] = field(default_factory=list)  # linked users
    created: list[tuple[str | None, str | None]] = field(default_factory=list)

    def browser(self) -> httpx.Client:
        return httpx.Client(follow_redirects=False, timeout=20)

    def linked_count(self) -> int:
        with self.db() as session:
            return int(session.scalar(select(func.count()).select_from(OidcIdentity)) or 0)


def _db(path: Path) -> sessionmaker[Session]:
    engine: Engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _foreign_keys(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def relying_party(
    db: sessionmaker[Session], idps: dict[str, TestIdentityProvider], **settings: Any
) -> Iterator[RelyingParty]:
    server = LoopbackServer()
    providers = {
        name: OidcProvider(
            name=name,
            issuer=idp.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            scopes=("openid", "email", "profile"),
            **settings,
        )
        for name, idp in idps.items()
    }
    rp = RelyingParty(url=server.url, db=db, providers=providers)
    for name, idp in idps.items():
        idp.register_client(CLIENT_ID, CLIENT_SECRET, [f"{rp.url}/auth/oidc/{name}/callback"])

    def create_user(email: str | None, name: str | None) -> str:
        """What the accounts service does: a NEW user; an e-mail already in use is refused."""
        rp.created.append((email, name))
        with db.begin() as session:
            if email and session.scalar(select(User).where(User.email == email.lower())):
                raise Conflict("an account with this e-mail exists; log in and link this provider")
            user_id = uuid.uuid4().hex
            session.add(
                User(
                    user_id=user_id,
                    email=(email or f"{user_id}@users.invalid").lower(),
                    display_name=name or "",
                    created_at=utcnow(),
                )
            )
        return user_id

    def on_login(identity: VerifiedIdentity, request: Request) -> Response:
        rp.calls.append(identity)
        user_id = link_or_find(db, identity, create_user)
        assert user_id is not None
        rp.logins.append((identity, user_id))
        return RedirectResponse("/home", status_code=303)

    oauth = build_oauth(list(providers.values()))
    app = Starlette(
        routes=oidc_routes(oauth, list(providers.values()), on_login, base_url=rp.url),
        middleware=[Middleware(SessionMiddleware, secret_key="rp-session-secret-for-tests")],
    )
    server.start(app)
    try:
        yield rp
    finally:
        server.stop()


@pytest.fixture
def db(tmp_path: Path) -> sessionmaker[Session]:
    return _db(tmp_path / "auth.db")


@pytest.fixture
def idp() -> Iterator[TestIdentityProvider]:
    with TestIdentityProvider() as provider:
        yield provider


@pytest.fixture
def rp(db: sessionmaker[Session], idp: TestIdentityProvider) -> Iterator[RelyingParty]:
    with relying_party(db, {"corp": idp}) as party:
        yield party


# --- the browser's steps ------------------------------------------------------------------


def start_login(browser: httpx.Client, rp: RelyingParty, name: str = "corp") -> str:
    """GET the login route; returns the provider's authorization URL it redirects to."""
    response = browser.get(f"{rp.url}/auth/oidc/{name}/login")
    assert response.status_code == 302, response.text
    return response.headers["location"]


def authorize(browser: httpx.Client, rp: RelyingParty, name: str = "corp") -> str:
    """Start a login and pass the provider's (automatic) consent; returns the callback URL."""
    response = browser.get(start_login(browser, rp, name))
    assert response.status_code == 302, response.text
    location: str = response.headers["location"]
    assert location.startswith(f"{rp.url}/auth/oidc/{name}/callback?")
    return location


def login(browser: httpx.Client, rp: RelyingParty, name: str = "corp") -> httpx.Response:
    return browser.get(authorize(browser, rp, name))


def with_state(callback: str, state: str) -> str:
    parts = urlsplit(callback)
    code = parse_qs(parts.query)["code"][0]
    return f"{parts.scheme}://{parts.netloc}{parts.path}?code={code}&state={state}"


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def assert_refused(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    assert response.text.startswith("Login failed: ")
    assert words in response.text, response.text
    assert len(response.text) < 200
    assert "Traceback" not in response.text and 'File "' not in response.text


# --- the happy path -------------------------------------------------------------------------


def test_full_login_calls_on_login_with_the_verified_identity_and_a_linked_user(
    rp: RelyingParty, idp: TestIdentityProvider
) -> None:
    with rp.browser() as browser:
        response = login(browser, rp)

    assert response.status_code == 303
    assert response.headers["location"] == "/home"
    [(identity, user_id)] = rp.logins
    assert identity == VerifiedIdentity(
        issuer=idp.issuer,
        subject="alice-sub",
        email="alice@example.com",
        email_verified=True,
        name="Alice",
    )
    assert rp.created == [("alice@example.com", "Alice")]
    with rp.db() as session:
        row = session.scalars(select(OidcIdentity)).one()
        assert (row.issuer, row.subject, row.user_id) == (idp.issuer, "alice-sub", user_id)
        assert session.get(User, user_id) is not None

    # state, nonce and PKCE (S256) were sent; the code was exchanged with the verifier
    [asked] = idp.authorize_requests
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["nonce"] and asked["state"]
    assert asked["redirect_uri"] == f"{rp.url}/auth/oidc/corp/callback"
    assert set(asked["scope"].split()) == {"openid", "email", "profile"}
    [exchange] = idp.token_requests
    assert exchange.status == 200 and exchange.basic_auth
    assert exchange.form["code_verifier"] and "client_secret" not in exchange.form


def test_a_second_login_finds_the_same_user_without_creating_one(
    rp: RelyingParty,
) -> None:
    with rp.browser() as first, rp.browser() as second:
        assert login(first, rp).status_code == 303
        assert login(second, rp).status_code == 303
    assert rp.logins[0][1] == rp.logins[1][1]
    assert len(rp.created) == 1 and rp.linked_count() == 1


def test_the_login_state_is_single_use_and_gone_after_the_callback(rp: RelyingParty) -> None:
    with rp.browser() as browser:
        callback = authorize(browser, rp)
        assert browser.get(callback).status_code == 303
        again = browser.get(callback)
    assert_refused(again, 400, "state does not match")
    assert len(rp.calls) == 1


def test_key_rotation_refetches_the_key_set_once(
    rp: RelyingParty, idp: TestIdentityProvider
) -> None:
    with rp.browser() as browser:
        assert login(browser, rp).status_code == 303
        idp.rotate_key()
        assert login(browser, rp).status_code == 303
    assert idp.jwks_requests == 2
    assert len(rp.logins) == 2


# --- attacks on the browser leg -------------------------------------------------------------


def test_a_state_from_another_session_is_rejected(
    rp: RelyingParty, idp: TestIdentityProvider
) -> None:
    with rp.browser() as victim, rp.browser() as attacker:
        victims_callback = authorize(victim, rp)
        start_login(attacker, rp)  # the attacker has a session (and a login) of its own
        response = attacker.get(victims_callback)
    assert_refused(response, 400, "state does not match this browser")
    assert rp.calls == [] and idp.token_requests == []


@pytest.mark.parametrize(
    ("faults", "status", "words"),
    [
        pytest.param(set(), 400, "refused the authorization code (invalid_grant)", id="pkce"),
        pytest.param({Fault.IGNORE_PKCE}, 401, "nonce does not match", id="nonce"),
    ],
)
def test_the_own_state_with_another_logins_code_is_rejected(
    rp: RelyingParty, idp: TestIdentityProvider, faults: set[Fault], status: int, words: str
) -> None:
    """Code injection: a code from another login, sent with the browser's own valid state.
    PKCE binds the code to the victim's verifier; if the provider skipped that check, the ID
    token's nonce (the victim's) still does not match this browser's login."""
    idp.faults |= faults
    with rp.browser() as victim, rp.browser() as attacker:
        stolen = authorize(victim, rp)
        own_state = state_of(authorize(attacker, rp))
        response = attacker.get(with_state(stolen, own_state))
    assert_refused(response, status, words)
    assert rp.calls == []


def test_a_callback_naming_another_issuer_is_rejected(
    rp: RelyingParty, idp: TestIdentityProvider
) -> None:
    """RFC 9207: a provider that sends ``iss`` with the code must be the one asked."""
    with rp.browser() as browser:
        response = browser.get(authorize(browser, rp) + "&iss=https%3A%2F%2Fevil.example")
    assert_refused(response, 400, "comes from another identity provider")
    assert rp.calls == [] and idp.token_requests == []


def test_a_callback_without_state_or_without_a_started_login_is_rejected(
    rp: RelyingParty,
) -> None:
    with rp.browser() as browser:
        no_state = browser.get(f"{rp.url}/auth/oidc/corp/callback?code=abc")
        not_started = browser.get(f"{rp.url}/auth/oidc/corp/callback?code=abc&state=xyz")
    assert_refused(no_state, 400, "no state")
    assert_refused(not_started, 400, "state does not match")
    assert rp.calls == []


def test_a_replayed_code_is_rejected(rp: RelyingParty, idp: TestIdentityProvider) -> None:
    with rp.browser() as browser:
        callback = authorize(browser, rp)
        assert browser.get(callback).status_code == 303
        # replay the used code under a fresh, valid state of the same browser
        fresh_state = state_of(start_login(browser, rp))
        response = browser.get(with_state(callback, fresh_state))
    assert_refused(response, 400, "refused the authorization code (invalid_grant)")
    assert [r.status for r in idp.token_requests] == [200, 400]
    assert idp.token_requests[1].error == "invalid_grant"
    assert len(rp.calls) == 1


@pytest.mark.parametrize(
    ("faults", "status", "words"),
    [
        pytest.param({Fault.REUSABLE_CODE}, 400, "(invalid_grant)", id="pkce"),
        pytest.param({Fault.REUSABLE_CODE, Fault.IGNORE_PKCE}, 401, "nonce", id="nonce"),
    ],
)
def test_a_provider_that_accepts_a_code_twice_is_still_caught(
    rp: RelyingParty, idp: TestIdentityProvider, faults: set[Fault], status: int, words: str
) -> None:
    """The replay carries a fresh state, so its PKCE verifier and nonce are the new login's:
    the code's challenge fails at the provider, and without that check the ID token (with
    the first login's nonce) fails here."""
    idp.faults |= faults
    with rp.browser() as browser:
        callback = authorize(browser, rp)
        assert browser.get(callback).status_code == 303
        fresh_state = state_of(start_login(browser, rp))
        response = browser.get(with_state(callback, fresh_state))
    assert_refused(response, status, words)
    assert len(rp.calls) == 1


def test_a_login_that_took_too_long_is_rejected(
    rp: RelyingParty, idp: TestIdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    with rp.browser() as browser:
        callback = authorize(browser, rp)
        later = SimpleNamespace(time=lambda: time.time() + 3600)
        monkeypatch.setattr("auth.oidc.time", later)
        response = browser.get(callback)
    assert_refused(response, 400, "took too long")
    assert idp.token_requests == [] and rp.calls == []


def test_a_refused_consent_is_reported(rp: RelyingParty, idp: TestIdentityProvider) -> None:
    idp.faults.add(Fault.DENY_CONSENT)
    with rp.browser() as browser:
        response = browser.get(browser.get(start_login(browser, rp)).headers["location"])
    assert_refused(response, 400, "did not complete the login (access_denied)")
    assert rp.calls == []


def test_an_unknown_provider_is_not_found(rp: RelyingParty) -> None:
    with rp.browser() as browser:
        response = browser.get(f"{rp.url}/auth/oidc/nobody/login")
    assert_refused(response, 404, "unknown identity provider")


def test_a_discovery_document_naming_another_issuer_stops_the_login(
    rp: RelyingParty, idp: TestIdentityProvider
) -> None:
    idp.faults.add(Fault.WRONG_DISCOVERY_ISSUER)
    with rp.browser() as browser:
        response = browser.get(f"{rp.url}/auth/oidc/corp/login")
        assert_refused(response, 502, "names another issuer")
        assert idp.authorize_requests == []
        idp.faults.clear()  # fixed at the provider: the document is fetched again
        assert login(browser, rp).status_code == 303


def test_a_plain_http_token_endpoint_stops_the_login(
    rp: RelyingParty, idp: TestIdentityProvider
) -> None:
    """The client secret must not travel in clear text to a public host."""
    idp.faults.add(Fault.HTTP_TOKEN_ENDPOINT)
    with rp.browser() as browser:
        response = browser.get(f"{rp.url}/auth/oidc/corp/login")
    assert_refused(response, 502, "no safe token_endpoint")
    assert idp.authorize_requests == []


def test_client_settings_smuggled_into_the_discovery_document_are_ignored(
    rp: RelyingParty, idp: TestIdentityProvider
) -> None:
    """authlib hands discovery fields to its HTTP client: ``code_challenge_method: null``
    would switch PKCE off, ``verify: false`` TLS checks, an inline ``jwks`` the key set."""
    idp.faults.add(Fault.HOSTILE_DISCOVERY)
    with rp.browser() as browser:
        assert login(browser, rp).status_code == 303
        idp.faults.add(Fault.OTHER_KEY)  # signed by the key the document inlined
        forged = login(browser, rp)
    assert_refused(forged, 401, "signature is invalid")
    assert [a["code_challenge_method"] for a in idp.authorize_requests] == ["S256", "S256"]
    assert all(t.basic_auth and "client_secret" not in t.form for t in idp.token_requests)
    assert len(rp.logins) == 1


def test_an_unreachable_provider_is_a_502_not_a_crash(db: sessionmaker[Session]) -> None:
    dead = TestIdentityProvider()  # its port is bound but never served
    try:
        with relying_party(db, {"corp": dead}) as rp, rp.browser() as browser:
            response = browser.get(f"{rp.url}/auth/oidc/corp/login")
    finally:
        dead.close()
    assert_refused(response, 502, "unreachable")


# --- attacks on the ID token ----------------------------------------------------------------

TOKEN_ATTACKS = [
    pytest.param({Fault.WRONG_NONCE}, "nonce does not match this login", id="wrong-nonce"),
    pytest.param({Fault.WRONG_AUDIENCE}, "audience does not include", id="wrong-audience"),
    pytest.param({Fault.EXTRA_AUDIENCE_NO_AZP}, "authorized party", id="extra-audience-no-azp"),
    pytest.param({Fault.WRONG_ISSUER}, "issuer does not match", id="wrong-issuer"),
    pytest.param({Fault.ISSUER_TRAILING_SLASH}, "issuer does not match", id="issuer-slash"),
    pytest.param({Fault.ALG_NONE}, "algorithm 'none' is not allowed", id="alg-none"),
    pytest.param(
        {Fault.ALG_NONE, Fault.ADVERTISE_WEAK_ALGS},
        "algorithm 'none' is not allowed",
        id="alg-none-advertised",
    ),
    pytest.param(
        {Fault.HS256_PUBLIC_KEY, Fault.ADVERTISE_WEAK_ALGS},
        "algorithm 'HS256' is not allowed",
        id="hs256-with-public-key",
    ),
    pytest.param({Fault.OTHER_KEY}, "signature is invalid", id="wrong-signing-key"),
    pytest.param({Fault.UNKNOWN_KEY}, "signed by an unknown key", id="unknown-key-id"),
    pytest.param({Fault.EXPIRED}, "has expired", id="expired"),
    pytest.param({Fault.NOT_YET_VALID}, "not valid yet", id="issued-in-the-future"),
    pytest.param({Fault.OVERSIZED}, "too large", id="oversized"),
    pytest.param({Fault.NO_ID_TOKEN}, "sent no ID token", id="no-id-token"),
]


@pytest.mark.parametrize(("faults", "words"), TOKEN_ATTACKS)
def test_a_bad_id_token_is_rejected(
    rp: RelyingParty, idp: TestIdentityProvider, faults: set[Fault], words: str
) -> None:
    idp.faults |= faults
    with rp.browser() as browser:
        response = login(browser, rp)
    assert [r.status for r in idp.token_requests] == [200]  # the provider did issue it
    assert_refused(response, 401, words)
    assert rp.calls == [] and rp.created == [] and rp.linked_count() == 0


# --- account linking ------------------------------------------------------------------------


def test_the_same_email_from_another_issuer_does_not_open_the_account(
    db: sessionmaker[Session], idp: TestIdentityProvider
) -> None:
    """A second provider vouching for alice@example.com (even with the same subject) is a
    different person until linked: no login into alice's account."""
    with ExitStack() as stack:
        other = stack.enter_context(TestIdentityProvider(TestUser()))
        rp = stack.enter_context(relying_party(db, {"corp": idp, "other": other}))
        with rp.browser() as browser:
            assert login(browser, rp, "corp").status_code == 303
            response = login(browser, rp, "other")
    [(first, alice)] = rp.logins
    assert first.issuer == idp.issuer
    # the accounts service refuses a second account with that e-mail; nothing was linked
    assert_refused(response, 409, "an account with this e-mail exists")
    assert len(rp.calls) == 2 and rp.calls[1].issuer == other.issuer
    with db() as session:
        rows = session.scalars(select(OidcIdentity)).all()
    assert [(r.issuer, r.user_id) for r in rows] == [(idp.issuer, alice)]


def test_link_or_find_keys_on_issuer_and_subject_only(db: sessionmaker[Session]) -> None:
    made: list[tuple[str | None, str | None]] = []

    def create_user(email: str | None, name: str | None) -> str:
        made.append((email, name))
        user_id = uuid.uuid4().hex
        with db.begin() as session:
            session.add(
                User(
                    user_id=user_id,
                    email=f"{user_id}@users.invalid",
                    display_name=name or "",
                    created_at=utcnow(),
                )
            )
        return user_id

    a = VerifiedIdentity("https://a.example", "123", "alice@example.com", True, "Alice")
    b = VerifiedIdentity("https://b.example", "123", "alice@example.com", True, "Alice")
    unverified = VerifiedIdentity("https://c.example", "9", "alice@example.com", False, None)

    assert link_or_find(db, a) is None  # nothing linked, no create_user: no account
    user_a = link_or_find(db, a, create_user)
    user_b = link_or_find(db, b, create_user)
    assert user_a is not None and user_b is not None and user_a != user_b
    assert link_or_find(db, a, create_user) == user_a  # found, not created again
    assert link_or_find(db, unverified, create_user) not in (None, user_a, user_b)
    # an e-mail the provider did not verify is not handed to the accounts service
    assert made == [
        ("alice@example.com", "Alice"),
        ("alice@example.com", "Alice"),
        (None, None),
    ]


def test_link_attaches_a_login_to_one_account_only(db: sessionmaker[Session]) -> None:
    users = []
    with db.begin() as session:
        for n in range(2):
            user_id = uuid.uuid4().hex
            users.append(user_id)
            session.add(
                User(
                    user_id=user_id,
                    email=f"u{n}@example.com",
                    display_name=f"u{n}",
                    created_at=utcnow(),
                )
            )
    identity = VerifiedIdentity("https://a.example", "s1", None, False, None)
    link(db, identity, users[0])
    link(db, identity, users[0])  # again: nothing changes
    assert link_or_find(db, identity) == users[0]
    with pytest.raises(Conflict):
        link(db, identity, users[1])
    assert link_or_find(db, identity) == users[0]


# --- settings and the verifier on their own -------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"allowed_algorithms": ["none"]}, "'none' is not allowed"),
        ({"allowed_algorithms": ["RS256", "HS256"]}, "'HS256' is not allowed"),
        ({"allowed_algorithms": []}, "at least one"),
        ({"issuer": "http://idp.example.com"}, "https"),
        ({"issuer": "https://idp.example.com/?tenant=1"}, "without query"),
        ({"scopes": ["email"]}, "openid"),
        ({"client_secret": None}, "exactly one"),
        ({"client_secret_name": "vault-name"}, "exactly one"),
        ({"name": "Corp Login"}, "lower-case"),
    ],
)
def test_provider_settings_refuse_unsafe_values(changes: dict[str, Any], words: str) -> None:
    settings: dict[str, Any] = {
        "name": "corp",
        "issuer": "https://idp.example.com",
        "client_id": "c",
        "client_secret": "s",
    }
    settings.update(changes)
    with pytest.raises(ValueError, match=words):
        OidcProvider(**settings)


def test_a_secret_by_name_is_resolved_when_the_registry_is_built() -> None:
    provider = OidcProvider(
        name="corp", issuer="https://idp.example.com", client_id="c", client_secret_name="oidc"
    )
    asked: list[str] = []

    def resolve(name: str) -> str:
        asked.append(name)
        return "from-the-vault"

    oauth = build_oauth([provider], resolve_secret=resolve)
    assert asked == ["oidc"] and oauth.create_client("corp").client_secret == "from-the-vault"
    with pytest.raises(ValueError, match="no resolve_secret"):
        build_oauth([provider])


def _signed(key: RSAKey, claims: dict[str, Any]) -> str:
    token: str = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
    return token


def test_verify_id_token_checks_each_claim() -> None:
    key = RSAKey.generate_key(2048, {"kid": "k1"})
    keys = KeySet([key])
    provider = OidcProvider(
        name="corp", issuer="https://idp.example.com", client_id="c", client_secret="s"
    )
    now = int(time.time())
    good = {
        "iss": "https://idp.example.com",
        "sub": "s",
        "aud": "c",
        "iat": now,
        "exp": now + 60,
        "nonce": "n",
    }
    assert verify_id_token(_signed(key, good), provider, keys, nonce="n")["sub"] == "s"
    multi = good | {"aud": ["c", "d"], "azp": "c"}
    assert verify_id_token(_signed(key, multi), provider, keys, nonce="n")["azp"] == "c"

    bad: list[tuple[dict[str, Any], str | None]] = [
        (good | {"azp": "d"}, "authorized party"),
        ({k: v for k, v in good.items() if k != "exp"}, "'exp'"),
        (good | {"iat": True}, "'iat'"),
        (good | {"nbf": now + 600}, "not valid yet"),
        (good | {"exp": now - 30}, None),  # inside the 60 s leeway: accepted
        (good | {"sub": ""}, "subject"),
        ({k: v for k, v in good.items() if k != "nonce"}, "nonce"),
    ]
    for claims, words in bad:
        token = _signed(key, claims)
        if words is None:
            verify_id_token(token, provider, keys, nonce="n")
            continue
        with pytest.raises(IdTokenRejected, match=words):
            verify_id_token(token, provider, keys, nonce="n")
    for garbage in ("", "a.b", "!!.??.", "a.b.c.d.e"):
        with pytest.raises(IdTokenRejected, match="malformed"):
            verify_id_token(garbage, provider, keys, nonce="n")


def test_on_error_renders_refusals_and_on_login_refusals_become_4xx(
    db: sessionmaker[Session], idp: TestIdentityProvider
) -> None:
    """The app may render errors itself; a StudioError from on_login is a 4xx, not a 500."""
    provider = OidcProvider(
        name="corp", issuer=idp.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    seen: list[OidcLoginError] = []

    def on_error(error: OidcLoginError, request: Request) -> Response:
        seen.append(error)
        return PlainTextResponse(f"custom: {error.message}", status_code=error.status_code)

    async def on_login(identity: VerifiedIdentity, request: Request) -> Response:
        raise Conflict("this login is not allowed here")

    server = LoopbackServer()
    idp.register_client(CLIENT_ID, CLIENT_SECRET, [f"{server.url}/auth/oidc/corp/callback"])
    app = Starlette(
        routes=oidc_routes(
            build_oauth([provider]), [provider], on_login, base_url=server.url, on_error=on_error
        ),
        middleware=[Middleware(SessionMiddleware, secret_key="another-secret")],
    )
    server.start(app)
    try:
        with httpx.Client(follow_redirects=False, timeout=20) as browser:
            first = browser.get(f"{server.url}/auth/oidc/corp/login")
            callback = browser.get(first.headers["location"]).headers["location"]
            response = browser.get(callback)
            unknown = browser.get(f"{server.url}/auth/oidc/corp/callback?state=x&code=y")
    finally:
        server.stop()
    assert (response.status_code, response.text) == (409, "custom: this login is not allowed here")
    assert unknown.status_code == 400 and unknown.text.startswith("custom: the login state")
    assert [e.provider for e in seen] == ["corp", "corp"]


def test_routes_refuse_a_provider_missing_from_the_registry() -> None:
    provider = OidcProvider(
        name="corp", issuer="https://idp.example.com", client_id="c", client_secret="s"
    )
    on_login: Callable[[VerifiedIdentity, Request], Response] = lambda i, r: Response()  # noqa: E731
    with pytest.raises(ValueError, match="not registered"):
        oidc_routes(build_oauth([]), [provider], on_login)
