"""Bearer tokens: verify a JWT into an Actor (PyJWT), and mint development tokens.

One kind of key per deployment, chosen by the settings: an HS256 shared secret, a PEM
public key (RS256 for RSA, ES256 for EC), or a JWKS document from a file or a URL (RS256 and
ES256 keys, picked by ``kid``). The algorithms accepted follow from the key, never from the
token, so ``alg: none`` and HS256-signed-with-the-public-key are refused. Issuer, audience,
expiry and subject are required and checked, with a bounded leeway for clock skew.

Keys are read in ``load`` (at start-up, off the event loop); a JWKS URL is fetched again, off
the loop and at most once a minute, when a token names a key id it does not know (rotation).

A client sends the same token with every request until it expires, so verified tokens are
remembered (by digest, up to ``MAX_REMEMBERED``): a token seen before costs a hash and a look
at the clock instead of a signature check. Only the time claims can change a verified
token's verdict, and they are checked again on every use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from domain.access import ROLES, Actor
from graph.runtime.settings import Settings

JWKS_REFRESH_SECONDS = 60.0
JWKS_FETCH_TIMEOUT = 10.0
MAX_SUBJECT = 255
MAX_CUSTOMER_ID = 100
MAX_TOKEN_BYTES = 8192  # a JWT larger than this is not one we issued
MAX_REMEMBERED = 10_000  # verified tokens kept, least recently used dropped first


class InvalidToken(Exception):
    """The token was presented and is not acceptable; the message says why."""


class TokenVerifier:
    def __init__(
        self, settings: Settings, *, jwks_refresh_seconds: float = JWKS_REFRESH_SECONDS
    ) -> None:
        self._settings = settings
        self._jwks_refresh_seconds = jwks_refresh_seconds
        self._keys: dict[str | None, tuple[Any, str]] = {}  # kid -> (key, algorithm)
        self._fetched_at = 0.0
        self._refresh: asyncio.Task[None] | None = None
        # digest -> (actor, exp, nbf): tokens verified before
        self._verified: OrderedDict[bytes, tuple[Actor, float, float]] = OrderedDict()

    async def load(self) -> None:
        """Read the keys the settings name; raises ValueError naming what is wrong."""
        s = self._settings
        if s.jwt_secret is not None:
            self._keys = {None: (s.jwt_secret, "HS256")}
        elif s.jwt_public_key_file is not None:
            pem = await asyncio.to_thread(Path(s.jwt_public_key_file).read_bytes)
            self._keys = {None: _public_key(pem)}
        elif s.jwt_jwks is not None:
            await self._load_jwks()
        else:
            raise ValueError("no JWT key configured")

    async def _load_jwks(self) -> None:
        source = self._settings.jwt_jwks
        assert source is not None
        document = await asyncio.to_thread(_read_jwks, source)
        self._keys = _jwks_keys(document)
        self._fetched_at = time.monotonic()

    async def verify(self, token: str) -> Actor:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token too large")
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self._verified.get(digest)
        if remembered is not None:
            actor, expires, not_before = remembered
            now, leeway = time.time(), self._settings.jwt_leeway
            if not_before - leeway <= now <= expires + leeway:
                self._verified.move_to_end(digest)
                return actor
            del self._verified[digest]  # expired (or not yet valid): verify it in full
        actor, claims = await self._verify(token)
        self._verified[digest] = (actor, float(claims["exp"]), float(claims.get("nbf", 0)))
        if len(self._verified) > MAX_REMEMBERED:
            self._verified.popitem(last=False)
        return actor

    async def _verify(self, token: str) -> tuple[Actor, dict[str, Any]]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as error:
            raise InvalidToken(f"malformed token: {error}") from None
        key = await self._key(kid)
        s = self._settings
        try:
            claims = jwt.decode(
                token,
                key[0],
                algorithms=[key[1]],
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                leeway=s.jwt_leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from None
        return self._actor(claims), claims

    async def _key(self, kid: str | None) -> tuple[Any, str]:
        if len(self._keys) == 1 and None in self._keys:
            return self._keys[None]  # one configured key: the token's kid does not matter
        if kid not in self._keys and self._may_refresh():
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.create_task(self._load_jwks())
            # On failure keep the keys we had; this token is then refused below.
            with contextlib.suppress(OSError, ValueError):
                await asyncio.shield(self._refresh)
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidToken(f"unknown key id {kid!r}") from None

    def _may_refresh(self) -> bool:
        source = self._settings.jwt_jwks or ""
        remote = source.startswith(("http://", "https://"))
        return remote and time.monotonic() - self._fetched_at >= self._jwks_refresh_seconds

    def _actor(self, claims: dict[str, Any]) -> Actor:
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT:
            raise InvalidToken(f"sub must be a string of 1 to {MAX_SUBJECT} characters")
        roles = frozenset(_roles(claims.get(self._settings.jwt_roles_claim))) & set(ROLES)
        customer = claims.get(self._settings.jwt_customer_claim)
        if customer is None and "customer" in roles:
            customer = subject  # a customer's own subject is their customer id by default
        if customer is not None and (
            not isinstance(customer, str) or not 0 < len(customer) <= MAX_CUSTOMER_ID
        ):
            raise InvalidToken(f"customer id must be a string of 1 to {MAX_CUSTOMER_ID} chars")
        return Actor(subject, roles, customer, expires_at=float(claims["exp"]))


def _roles(value: object) -> Iterable[str]:
    if isinstance(value, str):
        return value.split()  # the OAuth "scope" style: space-separated
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _public_key(pem: bytes) -> tuple[Any, str]:
    algorithm = _algorithm_for(key := load_pem_public_key(pem))
    if algorithm is None:
        raise ValueError("JWT_PUBLIC_KEY_FILE must hold an RSA or a P-256 EC public key")
    return key, algorithm


def _algorithm_for(key: object) -> str | None:
    """The one algorithm a public key may verify: its type decides, never the token."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    return None


def _read_jwks(source: str) -> dict[str, Any]:
    """Blocking: run in a thread."""
    if source.startswith(("http://", "https://")):
        request = urllib.request.Request(source, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=JWKS_FETCH_TIMEOUT) as response:
            document = json.loads(response.read(1_000_000))
    else:
        document = json.loads(Path(source).read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{source} is not a JWKS document")
    return document


def _jwks_keys(document: dict[str, Any]) -> dict[str | None, tuple[Any, str]]:
    try:
        jwks = jwt.PyJWKSet.from_dict(document).keys
    except jwt.PyJWTError as error:
        raise ValueError(f"unusable JWKS document: {error}") from None
    keys: dict[str | None, tuple[Any, str]] = {}
    for jwk in jwks:
        algorithm = _algorithm_for(jwk.key)
        # Skipped: secret (oct) keys, encryption keys, and keys published for an algorithm
        # other than the one their type allows.
        if algorithm is None or jwk.public_key_use not in (None, "sig"):
            continue
        if jwk.algorithm_name == algorithm:
            keys[jwk.key_id] = (jwk.key, algorithm)
    if not keys:
        raise ValueError("the JWKS document holds no RS256 or ES256 signing key")
    return keys


def mint(
    settings: Settings,
    subject: str,
    roles: Iterable[str],
    customer_id: str | None = None,
    *,
    ttl_seconds: int = 3600,
) -> str:
    """A development token signed with JWT_SECRET (HS256)."""
    if settings.jwt_secret is None:
        raise ValueError("minting a token needs JWT_SECRET (HS256)")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_seconds,
        settings.jwt_roles_claim: sorted(set(roles)),
    }
    if customer_id is not None:
        claims[settings.jwt_customer_claim] = customer_id
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
