"""An offline OpenID Connect identity provider for tests, built from authlib's server parts.

`TestIdentityProvider` is a Starlette app served by uvicorn on 127.0.0.1 (port 0) in a
background thread (`LoopbackServer`), so the client under test makes real HTTP calls:

- ``GET /.well-known/openid-configuration`` — discovery;
- ``GET /jwks`` — the public signing key(s) (RSA 2048, generated per instance, joserfc);
- ``GET /authorize`` — authlib's `AuthorizationCodeGrant` with `OpenIDCode` (nonce required)
  and PKCE `CodeChallenge` (S256 only, required); consents at once for `user`;
- ``POST /token`` — client_secret_basic, single-use codes bound to client, redirect URI and
  PKCE challenge; the ID token is signed RS256 with ``kid`` ``idp-key-1``.

Each test can make it misbehave by adding `Fault` values to ``idp.faults`` (wrong issuer,
wrong audience, ``alg=none``, HS256 keyed with the public key, another signing key, expired,
wrong nonce, oversized, a code that can be used twice, ...). Every authorization and token
request is recorded (``authorize_requests``, ``token_requests``).

    with TestIdentityProvider() as idp:
        idp.register_client("studio", "s3cret", ["http://127.0.0.1:8080/cb"])
        idp.faults.add(Fault.ALG_NONE)
"""

from __future__ import annotations

__all__ = [
    "Fault",
    "LoopbackServer",
    "RecordedTokenRequest",
    "TestIdentityProvider",
    "TestUser",
]

import base64
import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

HOST = "127.0.0.1"  # one host string everywhere (never "localhost")
KID = "idp-key-1"


class Fault(Enum):
    """Ways the provider can misbehave; combine them in ``idp.faults``."""

    WRONG_ISSUER = "iss is another provider"
    ISSUER_TRAILING_SLASH = "iss differs only by a trailing slash"
    WRONG_DISCOVERY_ISSUER = "the discovery document names another issuer"
    WRONG_AUDIENCE = "aud is another client"
    EXTRA_AUDIENCE_NO_AZP = "aud has this client and another one, no azp"
    ALG_NONE = "unsigned token (alg=none)"
    ADVERTISE_WEAK_ALGS = "discovery advertises none and HS256"
    HOSTILE_DISCOVERY = "discovery carries client settings and an inline jwks (the rogue key)"
    HTTP_TOKEN_ENDPOINT = "discovery names a plain-http token endpoint on a public host"
    HS256_PUBLIC_KEY = "HS256 with the RSA public key (PEM) as the HMAC secret"
    OTHER_KEY = "signed by another RSA key under the published kid"
    UNKNOWN_KEY = "signed by another RSA key under a kid not in the JWKS"
    EXPIRED = "exp an hour ago"
    NOT_YET_VALID = "iat an hour from now"
    WRONG_NONCE = "nonce of another login"
    OVERSIZED = "a 20 KB claim"
    NO_ID_TOKEN = "token response without id_token"
    REUSABLE_CODE = "a code can be exchanged more than once"
    IGNORE_PKCE = "the code verifier is not checked"
    DENY_CONSENT = "the user refuses (error=access_denied)"


@dataclass(frozen=True, slots=True)
class TestUser:
    __test__ = False  # not a pytest class

    sub: str = "alice-sub"
    email: str = "alice@example.com"
    email_verified: bool = True
    name: str = "Alice"


@dataclass(frozen=True, slots=True)
class RecordedTokenRequest:
    form: dict[str, str]
    basic_auth: bool
    status: int
    error: str | None


@dataclass(slots=True)
class _Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    scopes: frozenset[str] = frozenset({"openid", "email", "profile"})

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or "").split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass(slots=True)
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user: TestUser
    issued_at: float = field(default_factory=time.time)
    used: bool = False

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.issued_at)

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._data.setdefault(key, value)
            self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):  # type: ignore[misc]
    """authlib's request, built from an already-read Starlette request (headers by keyword)."""

    def __init__(
        self, request: Request, query: list[tuple[str, str]], form: list[tuple[str, str]]
    ) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self.payload = _Payload(query + form)
        self._args = dict(query)
        self._form = dict(form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _StrictPkce(CodeChallenge):  # type: ignore[misc]
    """PKCE is required on every authorization request, and only S256."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE with code_challenge_method=S256 is required")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if Fault.IGNORE_PKCE not in grant.server.idp.faults:
            super().validate_code_verifier(grant, result)


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]
    CODE_LIFETIME_S = 60

    @property
    def idp(self) -> TestIdentityProvider:
        idp: TestIdentityProvider = self.server.idp
        return idp

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        self.idp.codes[code] = _Code(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            user=request.user,
        )

    def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
        item = self.idp.codes.get(code)
        if item is None or item.client_id != client.client_id:
            return None
        if time.time() - item.issued_at > self.CODE_LIFETIME_S:
            return None
        if item.used and Fault.REUSABLE_CODE not in self.idp.faults:
            return None
        return item

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        authorization_code.used = True  # kept, so a second use is recognised and refused

    def authenticate_user(self, authorization_code: _Code) -> TestUser:
        return authorization_code.user


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _OpenId(OpenIDCode):  # type: ignore[misc]
    def __init__(self, idp: TestIdentityProvider) -> None:
        super().__init__(require_nonce=True)
        self.idp = idp

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return any(c.nonce == nonce for c in self.idp.codes.values())

    def resolve_client_private_key(self, client: _Client) -> RSAKey:
        faults = self.idp.faults
        if Fault.OTHER_KEY in faults or Fault.UNKNOWN_KEY in faults:
            return self.idp.rogue_key
        return self.idp.key

    def get_client_algorithm(self, client: _Client) -> str:
        return "RS256"

    def get_encode_header(self, client: _Client) -> dict[str, str]:
        kid = "rogue-key" if Fault.UNKNOWN_KEY in self.idp.faults else self.idp.kid
        return {"alg": "RS256", "kid": kid, "typ": "JWT"}

    def get_client_claims(self, client: _Client) -> dict[str, Any]:
        faults, now = self.idp.faults, int(time.time())
        claims: dict[str, Any] = {
            "iss": self.idp.issuer,
            "aud": [client.client_id],
            "iat": now,
            "exp": now + 300,
        }
        if Fault.WRONG_ISSUER in faults:
            claims["iss"] = f"http://{HOST}:9/another-idp"
        if Fault.ISSUER_TRAILING_SLASH in faults:
            claims["iss"] = self.idp.issuer + "/"
        if Fault.WRONG_AUDIENCE in faults:
            claims["aud"] = ["another-client"]
        if Fault.EXTRA_AUDIENCE_NO_AZP in faults:
            claims["aud"] = [client.client_id, "another-client"]
        if Fault.EXPIRED in faults:
            claims.update(iat=now - 7200, exp=now - 3600)
        if Fault.NOT_YET_VALID in faults:
            claims.update(iat=now + 3600, exp=now + 7200)
        return claims

    def get_authorization_code_claims(self, authorization_code: _Code) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        if Fault.WRONG_NONCE in self.idp.faults:
            claims["nonce"] = secrets.token_urlsafe(16)
        return claims

    def generate_user_info(self, user: TestUser, scope: str) -> UserInfo:
        info = UserInfo(sub=user.sub)
        if "profile" in scope.split():
            info["name"] = user.name
        if "email" in scope.split():
            info["email"] = user.email
            info["email_verified"] = user.email_verified
        if Fault.OVERSIZED in self.idp.faults:
            info["padding"] = "x" * 20_000
        return info

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        honest: str = super().encode_id_token(token, request)
        faults = self.idp.faults
        _, payload, _ = honest.split(".")
        if Fault.ALG_NONE in faults:
            return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}."
        if Fault.HS256_PUBLIC_KEY in faults:
            header = _b64(json.dumps({"alg": "HS256", "kid": self.idp.kid, "typ": "JWT"}).encode())
            secret = self.idp.key.as_pem(private=False)
            signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            return f"{header}.{payload}.{_b64(signature)}"
        return honest

    def process_token(self, grant: Any, response: Any) -> Any:
        if Fault.NO_ID_TOKEN in self.idp.faults:
            return response[1]
        return super().process_token(grant, response)


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, idp: TestIdentityProvider) -> None:
        super().__init__(scopes_supported=["openid", "email", "profile"])
        self.idp = idp
        self.register_grant(_CodeGrant, [_StrictPkce(required=True), _OpenId(idp)])
        self.register_token_generator("default", self._bearer)

    @staticmethod
    def _bearer(
        grant_type: str,
        client: _Client,
        user: TestUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        return {
            "token_type": "Bearer",
            "access_token": secrets.token_urlsafe(32),
            "expires_in": expires_in or 300,
            "scope": scope or "",
        }

    def query_client(self, client_id: str) -> _Client | None:
        return self.idp.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        self.idp.issued_tokens.append(token)

    def create_oauth2_request(self, request: Any) -> Any:
        if not isinstance(request, OAuth2Request):
            raise TypeError("build the OAuth2Request before calling the server")
        return request

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        pairs = [(str(k), str(v)) for k, v in (headers or [])]
        if isinstance(body, dict):
            response: Response = JSONResponse(body, status_code=status)
        else:
            response = Response(str(body or ""), status_code=status)
        for key, value in pairs:
            if key.lower() != "content-type":
                response.headers[key] = value
        return response


class LoopbackServer:
    """Serves an ASGI app with uvicorn on 127.0.0.1 in a daemon thread.

    The port is bound at construction, so ``url`` is known before the app exists.
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((HOST, 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, app: ASGIApp) -> None:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("loopback server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._socket.close()


class TestIdentityProvider:
    """The loopback OIDC provider (see the module docstring)."""

    __test__ = False  # not a pytest class

    def __init__(self, user: TestUser | None = None) -> None:
        self.user = user or TestUser()
        self.faults: set[Fault] = set()
        self.clients: dict[str, _Client] = {}
        self.codes: dict[str, _Code] = {}
        self.issued_tokens: list[dict[str, Any]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[RecordedTokenRequest] = []
        self.jwks_requests = 0
        self.kid = KID
        self.key = RSAKey.generate_key(2048, {"kid": KID, "use": "sig", "alg": "RS256"})
        self.rogue_key = RSAKey.generate_key(2048, {"kid": KID, "use": "sig", "alg": "RS256"})
        self._retired: list[RSAKey] = []
        self._loopback = LoopbackServer()
        self.url = self._loopback.url
        self.issuer = self.url
        self._server = _Server(self)
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
            ]
        )

    def __enter__(self) -> TestIdentityProvider:
        self._loopback.start(self.app)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._loopback.stop()

    def register_client(self, client_id: str, secret: str, redirect_uris: list[str]) -> None:
        self.clients[client_id] = _Client(client_id, secret, tuple(redirect_uris))

    def rotate_key(self) -> None:
        """Sign with a new key under a new kid from now on; the JWKS lists only the new key."""
        self._retired.append(self.key)
        self.kid = f"idp-key-{len(self._retired) + 1}"
        self.key = RSAKey.generate_key(2048, {"kid": self.kid, "use": "sig", "alg": "RS256"})

    # --- endpoints ---

    async def _discovery(self, request: Request) -> Response:
        issuer = self.issuer
        if Fault.WRONG_DISCOVERY_ISSUER in self.faults:
            issuer = f"http://{HOST}:9/another-idp"
        algs = ["RS256"]
        if Fault.ADVERTISE_WEAK_ALGS in self.faults:
            algs = ["none", "HS256", "RS256"]
        document: dict[str, Any] = {
            "issuer": issuer,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email"],
        }
        if Fault.HOSTILE_DISCOVERY in self.faults:
            document.update(
                code_challenge_method=None,
                verify=False,
                token_endpoint_auth_method="client_secret_post",
                scope="openid",
                jwks={"keys": [self.rogue_key.as_dict(private=False)]},
            )
        if Fault.HTTP_TOKEN_ENDPOINT in self.faults:
            document["token_endpoint"] = "http://idp.example.com/token"
        return JSONResponse(document)

    async def _jwks(self, request: Request) -> Response:
        self.jwks_requests += 1
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def _authorize(self, request: Request) -> Response:
        query = list(request.query_params.multi_items())
        self.authorize_requests.append(dict(query))
        oauth_request = _Request(request, query, [])
        try:
            grant = self._server.get_consent_grant(oauth_request, end_user=self.user)
        except OAuth2Error as error:
            response: Response = self._server.handle_error_response(oauth_request, error)
            return response
        user = None if Fault.DENY_CONSENT in self.faults else self.user
        result: Response = self._server.create_authorization_response(
            oauth_request, grant_user=user, grant=grant
        )
        return result

    async def _token(self, request: Request) -> Response:
        form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        response: Response = self._server.create_token_response(_Request(request, [], form))
        body = json.loads(bytes(response.body)) if response.body else {}
        self.token_requests.append(
            RecordedTokenRequest(
                form=dict(form),
                basic_auth=request.headers.get("authorization", "").startswith("Basic "),
                status=response.status_code,
                error=body.get("error") if isinstance(body, dict) else None,
            )
        )
        return response
