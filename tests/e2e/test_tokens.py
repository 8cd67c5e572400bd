"""Bearer tokens at the edge, over real HTTP and WebSocket: what is accepted and what is
refused (401 on HTTP, close code 4403 on both WebSocket protocols), with HS256 secrets, RS256
public keys and ES256 keys from a JWKS document (file or URL)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from graph.runtime.settings import Settings
from graph.tokens import InvalidToken, TokenVerifier
from tests.support.access_harness import SECRET, Desk, desk
from tests.support.serving import Protocol, graphql_ws, serve_app

ME = "{ orders { totalCount } }"
PROTOCOLS: list[Protocol] = ["graphql-transport-ws", "graphql-ws"]


@pytest.fixture
async def server(engine: AsyncEngine, database_url: str) -> AsyncIterator[Desk]:
    async with desk(engine, database_url) as server:
        yield server


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any]) -> str:
    """``alg: none``: a token with no signature at all."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def hs256_with_key(claims: dict[str, Any], key: bytes) -> str:
    """HS256 signed with arbitrary bytes (PyJWT refuses to sign with a PEM key itself)."""
    signing_input = ".".join(
        _b64(json.dumps(part).encode()) for part in ({"alg": "HS256", "typ": "JWT"}, claims)
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def claims(settings: Settings, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "mallory",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "exp": now + 600,
        "roles": ["staff"],
        **overrides,
    }


async def test_a_valid_token_is_accepted(server: Desk) -> None:
    data = await server.data(ME, token=server.forged())
    assert data == {"orders": {"totalCount": 0}}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bad signature", "Signature verification failed"),
        ("wrong audience", "Audience doesn't match"),
        ("wrong issuer", "Invalid issuer"),
        ("expired", "Signature has expired"),
        ("alg none", "alg"),
        ("no expiry", 'Token is missing the "exp" claim'),
        ("not a jwt", "malformed token"),
        ("not bearer", "Bearer <token>"),
    ],
)
async def test_a_bad_token_is_refused_with_401(server: Desk, case: str, reason: str) -> None:
    now = int(time.time())
    token = {
        "bad signature": server.forged(secret="another-secret-that-is-long-enough-too"),
        "wrong audience": server.forged(aud="someone-else"),
        "wrong issuer": server.forged(iss="https://evil.example"),
        "expired": server.forged(exp=now - 120),  # beyond the 30 s leeway
        "alg none": unsigned(claims(server.settings)),
        "no expiry": server.forged(exp=None),
        "not a jwt": "not.a.jwt",
        "not bearer": "",
    }[case]
    header = f"Basic {SECRET}" if case == "not bearer" else f"Bearer {token}"
    response = await server.http.post(
        "/graphql", json={"query": ME}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    (error,) = response.json()["errors"]
    assert reason in error["message"]


async def test_clock_skew_within_the_leeway_is_tolerated(server: Desk) -> None:
    token = server.forged(exp=int(time.time()) - 5)  # leeway is 30 s
    assert await server.data(ME, token=token) == {"orders": {"totalCount": 0}}


async def _refusal(url: str, protocol: Protocol, payload: dict[str, Any]) -> tuple[int, list[str]]:
    """Open a WebSocket, send connection_init; the close code and the messages before it."""
    ws_url = "ws" + url.removeprefix("http") + "/graphql"
    received: list[str] = []
    async with connect(ws_url, subprotocols=[Subprotocol(protocol)]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        try:
            while True:
                received.append(json.loads(await ws.recv())["type"])
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
    assert code is not None, "closed without a close frame"
    return code, received


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_websocket_without_a_token_is_closed_with_4403(
    server: Desk, protocol: Protocol
) -> None:
    code, received = await _refusal(server.url, protocol, {})
    assert code == 4403
    assert "connection_ack" not in received


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_websocket_with_a_bad_token_is_closed_with_4403(
    server: Desk, protocol: Protocol
) -> None:
    for token in (server.forged(secret="x" * 40), server.forged(aud="other"), "garbage"):
        code, received = await _refusal(server.url, protocol, {"token": token})
        assert code == 4403
        assert "connection_ack" not in received


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("key", ["Authorization", "authorization", "token"])
async def test_a_websocket_with_a_token_is_accepted(
    server: Desk, protocol: Protocol, key: str
) -> None:
    token = server.token("sam", "staff")
    payload = {key: token if key == "token" else f"Bearer {token}"}
    async with graphql_ws(server.url + "/graphql", protocol, payload=payload) as ws:
        status = await ws.subscribe("subscription { caughtUp(position: 0) { position } }")
        assert [e async for e in status] == [{"caughtUp": {"position": 0}}]


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def test_rs256_with_a_public_key_file(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(_pem(private))
    async with desk(
        engine, database_url, jwt_secret=None, jwt_public_key_file=str(key_file)
    ) as server:
        good = jwt.encode(claims(server.settings), private, algorithm="RS256")
        assert await server.data(ME, token=good) == {"orders": {"totalCount": 0}}

        # The classic confusion: HS256 "signed" with the public key as the secret.
        confused = hs256_with_key(claims(server.settings), _pem(private))
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for bad in (confused, jwt.encode(claims(server.settings), other, algorithm="RS256")):
            response = await server.post(ME, None, bad)
            assert response.status_code == 401, response.text


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": "ES256"}


async def test_es256_with_a_jwks_file(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(private, "k1")]}))
    async with desk(engine, database_url, jwt_secret=None, jwt_jwks=str(jwks)) as server:
        good = jwt.encode(claims(server.settings), private, "ES256", headers={"kid": "k1"})
        assert await server.data(ME, token=good) == {"orders": {"totalCount": 0}}
        unknown = jwt.encode(claims(server.settings), private, "ES256", headers={"kid": "k9"})
        response = await server.post(ME, None, unknown)
        assert response.status_code == 401
        assert "unknown key id" in response.text


async def test_a_jwks_url_is_fetched_again_when_a_new_key_id_appears() -> None:
    first, second = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    published = {"keys": [_jwk(first, "k1")]}
    fetches = 0

    async def jwks(_request: Request) -> JSONResponse:
        nonlocal fetches
        fetches += 1
        return JSONResponse(published)

    async with serve_app(Starlette(routes=[Route("/jwks.json", jwks)])) as url:
        settings = Settings(auth="jwt", jwt_jwks=f"{url}/jwks.json")
        verifier = TokenVerifier(settings, jwks_refresh_seconds=0)
        await verifier.load()
        token = jwt.encode(claims(settings, sub="s1"), first, "ES256", headers={"kid": "k1"})
        assert (await verifier.verify(token)).subject == "s1"
        assert fetches == 1

        published = {"keys": [_jwk(first, "k1"), _jwk(second, "k2")]}  # the IdP rotates
        rotated = jwt.encode(claims(settings, sub="s2"), second, "ES256", headers={"kid": "k2"})
        assert (await verifier.verify(rotated)).subject == "s2"
        assert fetches == 2
        assert (await verifier.verify(token)).subject == "s1"  # known kid: no fetch
        assert fetches == 2
        with pytest.raises(InvalidToken, match="unknown key id"):
            await verifier.verify(
                jwt.encode(claims(settings), second, "ES256", headers={"kid": str(uuid.uuid4())})
            )


async def test_roles_and_customer_come_from_the_configured_claims() -> None:
    settings = Settings(auth="jwt", jwt_secret=SECRET, jwt_roles_claim="scope")
    verifier = TokenVerifier(settings)
    await verifier.load()
    token = jwt.encode(claims(settings, sub="carol", scope="customer admin"), SECRET, "HS256")
    actor = await verifier.verify(token)
    # Unknown roles are dropped; a customer's id defaults to their subject.
    assert (actor.subject, actor.roles, actor.customer_id) == (
        "carol",
        frozenset({"customer"}),
        "carol",
    )


async def test_a_remembered_token_is_refused_once_it_expires() -> None:
    settings = Settings(auth="jwt", jwt_secret=SECRET, jwt_leeway=0)
    verifier = TokenVerifier(settings)
    await verifier.load()
    expires = int(time.time()) + 1
    token = jwt.encode(claims(settings, exp=expires), SECRET, "HS256")
    assert (await verifier.verify(token)).subject == "mallory"
    assert (await verifier.verify(token)).subject == "mallory"  # remembered
    # Expiry is a matter of the wall clock: wait until it has passed.
    await asyncio.sleep(max(expires - time.time(), 0) + 1.1)
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)


async def test_a_websocket_is_closed_with_4403_when_its_token_expires(
    engine: AsyncEngine, database_url: str
) -> None:
    async with desk(engine, database_url, jwt_leeway=0) as server:
        expires = int(time.time()) + 2
        token = server.forged(exp=expires)
        ws_url = "ws" + server.url.removeprefix("http") + "/graphql"
        subprotocols = [Subprotocol("graphql-transport-ws")]
        async with connect(ws_url, subprotocols=subprotocols) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            subscribe = {"query": "subscription { projectionUpdated { position } }"}
            await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": subscribe}))
            async with asyncio.timeout(20):
                await ws.wait_closed()
            assert time.time() >= expires
            assert ws.close_code == 4403
            assert ws.close_reason == "token expired"
