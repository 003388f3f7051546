"""OIDC login (authorization-code flow with PKCE) for configurable identity providers.

The flow, per provider (`OidcProvider`):

1. ``GET /auth/oidc/{provider}/login`` checks the provider's discovery document (its
   ``issuer`` must equal the configured issuer exactly), then redirects the browser to the
   provider's authorization endpoint with a fresh ``state``, ``nonce`` and PKCE ``S256``
   challenge. authlib keeps state, nonce, code verifier and redirect URI in the Starlette
   session (``request.session``), keyed by provider and state; **the app must install
   Starlette's ``SessionMiddleware`` with a secret key** (NiceGUI does this when
   ``ui.run(storage_secret=...)`` is given) — that signed cookie is what binds the callback to
   the browser that started the login.
2. ``GET /auth/oidc/{provider}/callback`` takes that login's data out of the session (it is
   single-use: removed before anything else happens), exchanges the code at the token endpoint
   (with the PKCE verifier and client authentication), then verifies the ID token itself
   with joserfc (`verify_id_token`): size limit, a fixed list of asymmetric algorithms (never
   ``none``, never HS*), a key from the provider's JWKS, exact issuer, audience/azp, expiry,
   issued-at and not-before with a small leeway, and the nonce of this login. authlib's own
   ID-token parsing is not used: it accepts whatever algorithms the provider's discovery
   document advertises and the issuer that document names.
3. The verified identity (`VerifiedIdentity`) goes to the app's ``on_login(identity,
   request)``, which returns the response (normally: `link_or_find` to get the user, start a
   web session, redirect). Any refusal is a short 4xx text response (or the app's
   ``on_error``); no stack trace reaches the browser.

Accounts are linked by verified issuer + subject only (`OidcIdentity`, `link_or_find`),
never by e-mail: a provider that lets users claim any address must not open someone else's
account.

Wiring in the web app (NiceGUI's ``app`` is a FastAPI app)::

    oauth = build_oauth(settings.oidc_providers, resolve_secret=vault_lookup)
    app.router.routes.extend(
        oidc_routes(oauth, settings.oidc_providers, on_login, base_url=settings.public_url)
    )
    ui.run(storage_secret=..., session_middleware_kwargs={"https_only": True})

The callback URL to register at each provider is
``{public_url}/auth/oidc/{provider}/callback``.
"""

from __future__ import annotations

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "CreateUser",
    "IdTokenRejected",
    "OidcIdentity",
    "OidcLoginError",
    "OidcProvider",
    "OnError",
    "OnLogin",
    "VerifiedIdentity",
    "build_oauth",
    "link",
    "link_or_find",
    "oidc_routes",
    "verify_id_token",
]

import base64
import binascii
import hmac
import inspect
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.starlette_client import OAuth, OAuthError
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from auth.base import Base, utcnow
from auth.tables import User, UTCDateTime
from components.errors import Conflict, Forbidden, NotFound, StudioError

logger = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "Ed25519",
    }
)
"""The only ID-token algorithms a provider may be configured with (no ``none``, no HS*)."""

_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


# --- settings -------------------------------------------------------------------------------


class OidcProvider(BaseModel):
    """One OIDC identity provider, from settings.

    ``issuer`` is compared exactly (character for character) with the discovery document's
    ``issuer`` and every ID token's ``iss``. Give the client secret either inline
    (``client_secret``) or by vault name (``client_secret_name``, resolved by `build_oauth`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="short id used in URLs, e.g. 'google' or 'corp'")
    title: str = Field("", max_length=100, description="label for the login button")
    issuer: str = Field(max_length=255)
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: SecretStr | None = None
    client_secret_name: str | None = Field(None, min_length=1, max_length=200)
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    allowed_algorithms: tuple[str, ...] = ("RS256", "ES256")
    discovery_url: str | None = Field(
        None, description="defaults to {issuer}/.well-known/openid-configuration"
    )
    leeway_s: int = Field(60, ge=0, le=300, description="clock skew allowed on exp/iat/nbf")
    max_id_token_bytes: int = Field(16 * 1024, ge=1024, le=64 * 1024)
    max_login_age_s: int = Field(600, ge=30, le=3600, description="login start → callback")
    http_timeout_s: float = Field(10.0, gt=0, le=60)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use 1-32 characters: lower-case letters, digits, '-' or '_'")
        return value

    @field_validator("issuer", "discovery_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value)
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError("scopes must include 'openid'")
        if any(not s or " " in s for s in value):
            raise ValueError("scopes are single words")
        return value

    @field_validator("allowed_algorithms")
    @classmethod
    def _algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("allow at least one algorithm, e.g. RS256")
        for alg in value:
            if alg not in ASYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"algorithm {alg!r} is not allowed for ID tokens; use one of "
                    f"{', '.join(sorted(ASYMMETRIC_ALGORITHMS))}"
                )
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> OidcProvider:
        if (self.client_secret is None) == (self.client_secret_name is None):
            raise ValueError("give exactly one of client_secret and client_secret_name")
        return self

    @property
    def metadata_url(self) -> str:
        return self.discovery_url or f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"


def _check_url(value: str, *, query_allowed: bool = False) -> None:
    parts = urlsplit(value)
    if (parts.query and not query_allowed) or parts.fragment or not parts.hostname:
        raise ValueError("an absolute URL without query or fragment is required")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return  # local development and tests only
    raise ValueError("the URL must use https (http only on a loopback host)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- results and errors ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """Who the provider vouched for, from a verified ID token.

    ``issuer`` + ``subject`` identify the person; ``email`` is informational unless
    ``email_verified`` (and even then never used to find an account).
    """

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None


class OidcLoginError(StudioError):
    """An OIDC login was refused; the message is short and safe to show."""

    status_code = 400

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.provider: str | None = None


class IdTokenRejected(OidcLoginError):
    """The ID token failed verification."""

    status_code = 401


OnLogin = Callable[[VerifiedIdentity, Request], Response | Awaitable[Response]]
"""Called after a verified login; returns the response (sync callables run in a thread)."""

OnError = Callable[[OidcLoginError, Request], Response]
"""Renders a refused login (default: a short plain-text 4xx)."""


# --- ID token verification ------------------------------------------------------------------


def _b64_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise IdTokenRejected("ID token is malformed")
    try:
        header = _b64_json(parts[0])
    except (ValueError, binascii.Error, UnicodeError):
        raise IdTokenRejected("ID token is malformed") from None
    if not isinstance(header, dict):
        raise IdTokenRejected("ID token is malformed")
    return header


def signing_keys(jwks: Mapping[str, Any]) -> KeySet:
    """The provider's signature keys: asymmetric public keys only (``oct`` keys are dropped)."""
    raw = jwks.get("keys")
    if not isinstance(raw, list):
        raise OidcLoginError("the identity provider's key set is invalid", status_code=502)
    keys = [
        k
        for k in raw
        if isinstance(k, dict)
        and k.get("kty") in ("RSA", "EC", "OKP")
        and k.get("use", "sig") == "sig"
        and "d" not in k
    ]
    try:
        return KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError):
        raise OidcLoginError(
            "the identity provider's key set is invalid", status_code=502
        ) from None


def _pick_key(keys: KeySet, kid: Any, alg: str) -> Any:
    kty = _KEY_TYPES[alg[:2]]
    candidates = [k for k in keys.keys if k.key_type == kty]
    if kid is not None:
        candidates = [k for k in candidates if k.kid == kid]
    elif len(candidates) != 1:
        candidates = []
    return candidates[0] if candidates else None


def _number(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IdTokenRejected(f"ID token has no valid '{name}' claim")
    return float(value)


def verify_id_token(
    token: str,
    provider: OidcProvider,
    keys: KeySet,
    *,
    nonce: str,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify an ID token for `provider` and this login's `nonce`; return its claims.

    Raises `IdTokenRejected` with a short reason. `keys` is the provider's JWKS
    (`signing_keys`); a token naming an unknown ``kid`` is rejected (the caller refreshes the
    key set once and retries, for key rotation).
    """
    if not isinstance(token, str) or len(token.encode()) > provider.max_id_token_bytes:
        raise IdTokenRejected("ID token is too large")
    header = _header(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in provider.allowed_algorithms:
        raise IdTokenRejected(f"ID token algorithm {str(alg)[:16]!r} is not allowed")
    if "crit" in header:
        raise IdTokenRejected("ID token uses unsupported critical header parameters")
    key = _pick_key(keys, header.get("kid"), alg)
    if key is None:
        raise IdTokenRejected("ID token is signed by an unknown key")
    registry = JWSRegistry(algorithms=[alg], strict_check_header=False)
    try:
        claims = jwt.decode(token, key, registry=registry).claims
    except BadSignatureError:
        raise IdTokenRejected("ID token signature is invalid") from None
    except (JoseError, ValueError, TypeError):
        raise IdTokenRejected("ID token could not be verified") from None

    if claims.get("iss") != provider.issuer:
        raise IdTokenRejected("ID token issuer does not match the provider")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise IdTokenRejected("ID token has no valid subject")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if (
        not isinstance(audiences, list)
        or not all(isinstance(a, str) for a in audiences)
        or provider.client_id not in audiences
    ):
        raise IdTokenRejected("ID token audience does not include this client")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != provider.client_id:
        raise IdTokenRejected("ID token authorized party (azp) is not this client")

    current = time.time() if now is None else now
    leeway = provider.leeway_s
    exp = _number(claims, "exp", required=True)
    iat = _number(claims, "iat", required=True)
    nbf = _number(claims, "nbf", required=False)
    assert exp is not None and iat is not None
    if current > exp + leeway:
        raise IdTokenRejected("ID token has expired")
    if iat > current + leeway or (nbf is not None and nbf > current + leeway):
        raise IdTokenRejected("ID token is not valid yet")

    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise IdTokenRejected("ID token nonce does not match this login")
    return dict(claims)


def _identity(claims: Mapping[str, Any]) -> VerifiedIdentity:
    email = claims.get("email")
    verified = claims.get("email_verified")
    name = claims.get("name")
    return VerifiedIdentity(
        issuer=str(claims["iss"]),
        subject=str(claims["sub"]),
        email=email if isinstance(email, str) and email else None,
        # some providers send the string "true"
        email_verified=isinstance(email, str) and (verified is True or verified == "true"),
        name=name if isinstance(name, str) and name else None,
    )


# --- authlib client registry ----------------------------------------------------------------


def build_oauth(
    providers: Sequence[OidcProvider],
    *,
    resolve_secret: Callable[[str], str] | None = None,
) -> OAuth:
    """An authlib Starlette `OAuth` registry with one client per provider (PKCE S256).

    `resolve_secret(name)` turns ``client_secret_name`` into the secret (e.g. from the vault).
    """
    oauth = OAuth()
    seen: set[str] = set()
    for provider in providers:
        if provider.name in seen:
            raise ValueError(f"two OIDC providers are named {provider.name!r}")
        seen.add(provider.name)
        if provider.client_secret is not None:
            secret = provider.client_secret.get_secret_value()
        elif resolve_secret is None:
            raise ValueError(
                f"OIDC provider {provider.name!r} names secret {provider.client_secret_name!r}"
                " but no resolve_secret was given"
            )
        else:
            assert provider.client_secret_name is not None
            secret = resolve_secret(provider.client_secret_name)
        oauth.register(
            provider.name,
            client_id=provider.client_id,
            client_secret=secret,
            server_metadata_url=provider.metadata_url,
            client_kwargs={
                "scope": " ".join(provider.scopes),
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "client_secret_basic",
                "timeout": provider.http_timeout_s,
            },
        )
    return oauth


# --- routes ---------------------------------------------------------------------------------


def oidc_routes(
    oauth: OAuth,
    providers: Sequence[OidcProvider],
    on_login: OnLogin,
    *,
    base_url: str | None = None,
    on_error: OnError | None = None,
    prefix: str = "/auth/oidc",
) -> list[Route]:
    """The login and callback routes: ``{prefix}/{provider}/login`` and ``.../callback``.

    `base_url` is the app's public origin (e.g. ``https://studio.example.com``); the callback
    URL registered at the provider is ``{base_url}{prefix}/{provider}/callback``. Without it
    the URL is derived from the request (the Host header), which is only right when the
    server sees the public host name.
    """
    if base_url is not None:
        _check_url(base_url)
    by_name = {p.name: p for p in providers}
    for name in by_name:
        if oauth.create_client(name) is None:
            raise ValueError(f"OIDC provider {name!r} is not registered in the OAuth registry")
    prefix = prefix.rstrip("/")

    def provider_of(request: Request) -> tuple[OidcProvider, Any]:
        provider = by_name.get(str(request.path_params.get("provider", "")))
        if provider is None:
            raise OidcLoginError("unknown identity provider", status_code=404)
        if "session" not in request.scope:
            raise RuntimeError("OIDC login needs Starlette's SessionMiddleware (with a secret)")
        return provider, oauth.create_client(provider.name)

    def callback_url(request: Request, provider: OidcProvider) -> str:
        if base_url is not None:
            return f"{base_url.rstrip('/')}{prefix}/{provider.name}/callback"
        return str(request.url_for("oidc_callback", provider=provider.name))

    def refuse(request: Request, error: OidcLoginError, provider: str | None) -> Response:
        error.provider = provider
        logger.warning("OIDC login via %s refused: %s", provider or "?", error.message)
        if on_error is not None:
            return on_error(error, request)
        return PlainTextResponse(
            f"Login failed: {error.message}", status_code=error.status_code, headers=_NO_STORE
        )

    async def login(request: Request) -> Response:
        name: str | None = None
        try:
            provider, client = provider_of(request)
            name = provider.name
            await _checked_metadata(client, provider)
            redirect_uri = callback_url(request, provider)
            rv = await client.create_authorization_url(redirect_uri)
            if not rv.get("code_verifier") or not rv.get("nonce") or not rv.get("state"):
                raise RuntimeError("authlib did not create state, nonce and PKCE verifier")
            await client.save_authorize_data(
                request,
                state=rv["state"],
                redirect_uri=redirect_uri,
                nonce=rv["nonce"],
                code_verifier=rv["code_verifier"],
                started_at=time.time(),
            )
        except OidcLoginError as error:
            return refuse(request, error, name)
        return RedirectResponse(rv["url"], status_code=302, headers=_NO_STORE)

    async def callback(request: Request) -> Response:
        name: str | None = None
        try:
            provider, client = provider_of(request)
            name = provider.name
            identity = await _complete_login(request, provider, client)
        except OidcLoginError as error:
            return refuse(request, error, name)
        try:
            if inspect.iscoroutinefunction(on_login):
                result: Any = await on_login(identity, request)
            else:
                result = await run_in_threadpool(on_login, identity, request)
                if inspect.isawaitable(result):
                    result = await result
        except StudioError as error:
            return refuse(request, _app_refusal(error), name)
        response: Response = result
        for header, value in _NO_STORE.items():
            response.headers.setdefault(header, value)
        return response

    return [
        Route(f"{prefix}/{{provider}}/login", login, methods=["GET"], name="oidc_login"),
        Route(f"{prefix}/{{provider}}/callback", callback, methods=["GET"], name="oidc_callback"),
    ]


def _app_refusal(error: StudioError) -> OidcLoginError:
    """An `on_login` refusal (e.g. `Conflict` from `create_user`) as a short 4xx."""
    if isinstance(error, OidcLoginError):
        return error
    status = 400
    if isinstance(error, NotFound):
        status = 404
    elif isinstance(error, Conflict):
        status = 409
    elif isinstance(error, Forbidden):
        status = 403
    return OidcLoginError(str(error)[:300], status_code=status)


_DISCOVERY_FIELDS = frozenset(
    {
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "registration_endpoint",
        "end_session_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "service_documentation",
        "op_policy_uri",
        "op_tos_uri",
    }
)
_CHECKED = "_studio_checked"


async def _checked_metadata(client: Any, provider: OidcProvider) -> dict[str, Any]:
    """The provider's discovery document, checked once per process.

    authlib passes every discovery field to its HTTP client as a keyword argument, so a
    document with ``verify``, ``proxy``, ``code_challenge_method`` or an inline ``jwks``
    could switch off TLS checks, PKCE or the key set; only standard discovery fields are
    kept. The issuer must equal the configured one and the endpoints must use https.
    """
    try:
        metadata = await client.load_server_metadata()
    except Exception:  # the HTTP library's errors, bad JSON, ...: the provider's fault
        logger.warning("OIDC discovery for %s failed", provider.name, exc_info=True)
        raise OidcLoginError("the identity provider is unreachable", status_code=502) from None
    if not isinstance(metadata, dict):
        raise OidcLoginError("the identity provider is unreachable", status_code=502)
    if metadata.get(_CHECKED):
        return metadata
    for key in list(metadata):
        if key not in _DISCOVERY_FIELDS and key != "_loaded_at" and not key.endswith("_supported"):
            del metadata[key]
    problem = None
    if metadata.get("issuer") != provider.issuer:
        problem = "the identity provider's discovery document names another issuer"
    else:
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            try:
                _check_url(str(metadata.get(key) or ""), query_allowed=True)
            except ValueError:
                problem = f"the identity provider's discovery document has no safe {key}"
                break
    if problem is not None:
        metadata.clear()  # fetched again next time, in case the provider fixes it
        raise OidcLoginError(problem, status_code=502)
    metadata[_CHECKED] = True
    return metadata


async def _complete_login(
    request: Request, provider: OidcProvider, client: Any
) -> VerifiedIdentity:
    params = request.query_params
    state = params.get("state")
    if not state or len(state) > 200:
        raise OidcLoginError("the login response has no state; start the login again")
    data = await client.framework.get_state_data(request.session, state)
    # single use, whatever happens next
    await client.framework.clear_state_data(request.session, state)
    if not isinstance(data, dict):
        raise OidcLoginError("the login state does not match this browser; start the login again")
    started = data.get("started_at")
    if not isinstance(started, int | float) or time.time() - started > provider.max_login_age_s:
        raise OidcLoginError("the login took too long; start the login again")

    returned_issuer = params.get("iss")  # RFC 9207: a mix-up between providers shows here
    if returned_issuer is not None and returned_issuer != provider.issuer:
        raise OidcLoginError("the login response comes from another identity provider")
    error = params.get("error")
    if error:
        shown = error if _ERROR_CODE.match(error) else "error"
        raise OidcLoginError(f"the identity provider did not complete the login ({shown})")
    code = params.get("code")
    nonce, verifier = data.get("nonce"), data.get("code_verifier")
    if not code or not isinstance(nonce, str) or not isinstance(verifier, str):
        raise OidcLoginError("the login response has no authorization code")

    await _checked_metadata(client, provider)
    try:
        token = await client.fetch_access_token(
            code=code, redirect_uri=data.get("redirect_uri"), code_verifier=verifier
        )
    except OAuthError as refused:
        reason = refused.error if _ERROR_CODE.match(str(refused.error or "")) else "error"
        raise OidcLoginError(
            f"the identity provider refused the authorization code ({reason})"
        ) from None
    except Exception:  # the HTTP library's errors, a non-JSON answer, ...
        logger.warning("OIDC token request to %s failed", provider.name, exc_info=True)
        raise OidcLoginError("the identity provider is unreachable", status_code=502) from None

    id_token = token.get("id_token") if isinstance(token, dict) else None
    if not isinstance(id_token, str):
        raise IdTokenRejected("the identity provider sent no ID token")
    claims = await _verify_with_rotation(client, provider, id_token, nonce)
    return _identity(claims)


async def _verify_with_rotation(
    client: Any, provider: OidcProvider, id_token: str, nonce: str
) -> dict[str, Any]:
    for force in (False, True):
        try:
            jwks = await client.fetch_jwk_set(force=force)
        except Exception:  # the HTTP library's errors, bad JSON, no jwks_uri
            logger.warning("OIDC key set of %s unavailable", provider.name, exc_info=True)
            raise OidcLoginError(
                "the identity provider's keys are unavailable", status_code=502
            ) from None
        try:
            return verify_id_token(id_token, provider, signing_keys(jwks), nonce=nonce)
        except IdTokenRejected as rejected:
            if force or rejected.message != "ID token is signed by an unknown key":
                raise
    raise AssertionError("unreachable")


# --- account linking ------------------------------------------------------------------------


class OidcIdentity(Base):
    """A user's login at one provider: (issuer, subject) → user. The only way OIDC finds users."""

    __tablename__ = "oidc_identities"
    __table_args__ = (
        UniqueConstraint("issuer", "subject", name="uq_oidc_identities_issuer_subject"),
    )
    identity_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey(User.user_id, ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


CreateUser = Callable[[str | None, str | None], str]
"""``create_user(email, name) -> user_id``: makes a NEW account (never returns an existing
one found by e-mail). `email` is None unless the provider verified it."""


def _linked(session: Session, identity: VerifiedIdentity) -> str | None:
    return session.scalar(
        select(OidcIdentity.user_id).where(
            OidcIdentity.issuer == identity.issuer, OidcIdentity.subject == identity.subject
        )
    )


def link_or_find(
    sessions: sessionmaker[Session],
    identity: VerifiedIdentity,
    create_user: CreateUser | None = None,
) -> str | None:
    """The user linked to (issuer, subject); else a new user from `create_user`, linked now.

    Returns None when nothing is linked and no `create_user` is given (the app then says "no
    account for this login"). The e-mail is never used to find an account. Two first logins
    at the same moment both call `create_user`; the later link loses and returns the winner's
    user (the extra account stays unlinked).
    """
    with sessions() as session:
        user_id = _linked(session, identity)
    if user_id is not None or create_user is None:
        return user_id
    new_user = create_user(identity.email if identity.email_verified else None, identity.name)
    try:
        with sessions.begin() as session:
            session.add(
                OidcIdentity(
                    issuer=identity.issuer,
                    subject=identity.subject,
                    user_id=new_user,
                    created_at=utcnow(),
                )
            )
    except IntegrityError:
        with sessions() as session:
            winner = _linked(session, identity)
        if winner is None:
            raise
        return winner
    return new_user


def link(sessions: sessionmaker[Session], identity: VerifiedIdentity, user_id: str) -> None:
    """Link (issuer, subject) to an existing user, e.g. a logged-in user adding a provider.

    Linking again to the same user does nothing; a login linked to another user is a
    `Conflict`.
    """
    taken = Conflict("this login is already linked to another account")
    try:
        with sessions.begin() as session:
            current = _linked(session, identity)
            if current == user_id:
                return
            if current is not None:
                raise taken
            session.add(
                OidcIdentity(
                    issuer=identity.issuer,
                    subject=identity.subject,
                    user_id=user_id,
                    created_at=utcnow(),
                )
            )
    except IntegrityError:
        with sessions() as session:
            current = _linked(session, identity)
        if current == user_id:
            return
        if current is not None:
            raise taken from None
        raise
