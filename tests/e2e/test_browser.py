"""What a person sees in a browser: the playground, the order desk, and a frontend on another
origin, in real headless Chromium against a running server. Screenshots go to
tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from graph.tokens import mint
from tests.support.browser import chromium, offline_page
from tests.support.graphql import PLACE, place_input
from tests.support.serving import serve_app

PAY = (
    "mutation($input: PayOrderInput!) { payOrder(input: $input) { __typename"
    " ... on CommandAccepted { version position } } }"
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@contextlib.asynccontextmanager
async def service(database_url: str, **overrides: Any) -> AsyncIterator[str]:
    settings = Settings(
        **{
            "database_url": database_url,
            "read_wait_seconds": 5,
            "poll_interval": 0.2,
            "auth": "none",
            **overrides,
        }
    )
    async with serve_app(create_app(settings)) as url:
        yield url


async def type_query(page: Page, text: str) -> None:
    """Replace the text of GraphiQL's query editor as a person does: select all, type."""
    await page.locator(".graphiql-query-editor .CodeMirror").click()
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    await page.keyboard.type(text)


async def test_the_playground_runs_a_query_and_a_subscription_with_the_internet_cut_off(
    browser: Browser, engine: AsyncEngine, database_url: str
) -> None:
    async with service(database_url) as url, offline_page(browser) as tab:
        response = await tab.page.goto(url + "/graphql")
        assert response is not None
        assert response.headers["content-type"].startswith("text/html")
        await tab.page.locator(".graphiql-container").wait_for()
        await tab.page.locator(".graphiql-execute-button").click()
        result = tab.page.locator(".graphiql-response")
        await expect(result).to_contain_text('"order_views"')
        await expect(result).to_contain_text('"totalCount": 0')
        await tab.screenshot(f"playground-query-{engine.dialect.name}")

        await type_query(
            tab.page, "subscription { caughtUp(position: 0) { position projections { name } } }"
        )
        await tab.page.locator(".graphiql-execute-button").click()
        await expect(result).to_contain_text('"caughtUp"')
        await expect(result).to_contain_text('"customer_summaries"')
        await tab.screenshot(f"playground-subscription-{engine.dialect.name}")
        assert tab.blocked == [], "the playground asked the internet for files"
        assert tab.errors == []


async def test_the_desk_shows_a_placed_order_once_the_read_models_have_it_and_follows_it_live(
    browser: Browser, engine: AsyncEngine, database_url: str
) -> None:
    async with (
        service(database_url) as url,
        offline_page(browser) as tab,
        httpx.AsyncClient(base_url=url, timeout=10) as other_client,
    ):
        page = tab.page
        await page.goto(url + "/")  # the desk is the service's front page
        await expect(page.locator("#socket-state")).to_have_text("live")
        await page.get_by_role("button", name="Place order").click()

        await expect(page.locator("#write-accepted")).to_contain_text("Command accepted")
        await expect(page.locator("#write-visible")).to_contain_text("Visible in the read side")
        card = page.locator("#write-order .order-card")
        await expect(card.locator(".status")).to_have_text("PLACED")
        await expect(card.locator(".total")).to_have_text("39.98")
        order_id = await card.get_attribute("data-order-id")
        assert order_id
        accepted = await page.locator("#write-accepted").text_content()
        position = (accepted or "").rsplit("position ", 1)[-1]
        for name in ("order_views", "customer_summaries", "daily_sales"):
            projection = page.locator(f'#projection-rows tr[data-projection="{name}"]')
            await expect(projection.locator(".position")).to_have_text(position)
        await tab.screenshot(f"desk-placed-{engine.dialect.name}")

        # Paid by someone else: the row follows orderChanged without a reload.
        paid = await other_client.post(
            "/graphql",
            json={"query": PAY, "variables": {"input": {"orderId": order_id, "amount": "39.98"}}},
        )
        assert paid.json()["data"]["payOrder"]["__typename"] == "CommandAccepted"
        row = page.locator(f'tr[data-order-id="{order_id}"]')
        await expect(row.locator(".status")).to_have_text("PAID")

        # Re-addressed from the desk: the row shows the new address once order_views has it.
        await row.get_by_role("button", name="Change address").click()
        await row.get_by_label("new line 1").fill("2 Side St")
        await row.get_by_role("button", name="Save address").click()
        await expect(row.locator(".ship-to")).to_contain_text("2 Side St")
        await expect(row.locator(".version")).to_have_text("3")

        # A second order, shipped before it is paid: the rule it breaks, inline on its row.
        await page.get_by_role("button", name="Place order").click()
        second = page.locator("#write-order .order-card")
        await expect(second).not_to_have_attribute("data-order-id", order_id)
        second_id = await second.get_attribute("data-order-id")
        second_row = page.locator(f'tr[data-order-id="{second_id}"]')
        await second_row.get_by_role("button", name="Ship").click()
        await expect(second_row.locator(".error")).to_contain_text(
            "RuleViolated (ship_requires_payment)"
        )

        # Input the edge refuses names its field, next to the form.
        await page.locator("#place-form").get_by_label("Country").fill("USA")
        await page.get_by_role("button", name="Place order").click()
        await expect(page.locator("#write-error")).to_contain_text(
            "InvalidInput (shippingAddress.country)"
        )

        panel = page.locator('#projection-rows tr[data-projection="order_views"]')
        await expect(panel).to_contain_text("live")
        await tab.screenshot(f"desk-live-{engine.dialect.name}")
        assert tab.blocked == []
        assert tab.errors == []


FRONTEND = """<!doctype html><title>a frontend on another origin</title><p>frontend</p>"""

# Runs in the foreign page: a POST mutation, a GET query and a graphql-transport-ws
# subscription, each reporting what the browser let through.
CALL_THE_API = (Path(__file__).parents[1] / "support" / "frontend_calls.js").read_text()


@contextlib.asynccontextmanager
async def frontend() -> AsyncIterator[str]:
    """A page served from another origin (another port), as a Vite dev server would be."""
    page = Starlette(routes=[Route("/", lambda _: HTMLResponse(FRONTEND))])
    async with serve_app(page) as url:
        yield url


async def test_a_frontend_on_an_allowed_origin_uses_http_and_websocket(
    browser: Browser, tmp_path: Any
) -> None:
    async with frontend() as origin:
        database_url = f"sqlite:///{tmp_path / 'cors.db'}"
        async with (
            service(database_url, cors_origins=(origin,)) as api,
            offline_page(browser) as tab,
        ):
            await tab.page.goto(origin + "/")
            result = await tab.page.evaluate(CALL_THE_API, api + "/graphql")
    assert result == {"post": "OrderNotFound", "get": 3, "ws": "caughtUp 0"}


async def test_a_frontend_on_another_origin_is_refused_unless_listed(
    browser: Browser, tmp_path: Any
) -> None:
    async with frontend() as origin, frontend() as other_origin:
        database_url = f"sqlite:///{tmp_path / 'cors.db'}"
        async with (
            service(database_url, cors_origins=(other_origin,)) as api,
            offline_page(browser) as tab,
        ):
            await tab.page.goto(origin + "/")
            result = await tab.page.evaluate(CALL_THE_API, api + "/graphql")
    refused = "refused: TypeError"  # what fetch raises when CORS withholds the answer
    assert result == {"post": refused, "get": refused, "ws": "closed 1006"}


async def test_the_preflight_names_the_allowed_origin_only(tmp_path: Any) -> None:
    origin = "http://localhost:5173"
    async with (
        service(f"sqlite:///{tmp_path / 'cors.db'}", cors_origins=(origin,)) as api,
        httpx.AsyncClient(base_url=api) as http,
    ):
        allowed = await http.options(
            "/graphql",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        refused = await http.options(
            "/graphql",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == origin
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


def test_cors_origins_must_be_exact() -> None:
    listed = Settings.from_env({"CORS_ORIGINS": "http://localhost:5173, https://shop.example"})
    assert listed.cors_origins == ("http://localhost:5173", "https://shop.example")
    for wrong in ("*", "http://localhost:5173/", "localhost:5173", "https://*.example"):
        with pytest.raises(ValueError, match="CORS_ORIGINS"):
            Settings.from_env({"CORS_ORIGINS": wrong})


async def test_the_desk_sends_its_token_and_a_customer_sees_only_their_own_orders(
    browser: Browser, engine: AsyncEngine, database_url: str
) -> None:
    secret = "a-browser-test-secret-long-enough-for-hs256"
    minting = Settings(auth="jwt", jwt_secret=secret)
    alice = mint(minting, "alice", ["customer"], "alice")
    staff = mint(minting, "sam", ["staff"])
    async with (
        service(database_url, auth="jwt", jwt_secret=secret) as url,
        offline_page(browser) as tab,
        httpx.AsyncClient(base_url=url, timeout=10) as desk_client,
    ):
        bobs = await desk_client.post(
            "/graphql",
            json={"query": PLACE, "variables": {"input": place_input(customerId="bob")}},
            headers={"Authorization": f"Bearer {staff}"},
        )
        bobs_id = bobs.json()["data"]["placeOrder"]["orderId"]

        page = tab.page
        await page.add_init_script(f"localStorage.setItem('ordergraph.token', '{alice}')")
        await page.goto(url + "/")
        await expect(page.locator("#socket-state")).to_have_text("live")  # connection_init
        await page.get_by_role("button", name="Place order").click()  # customer "alice"
        await expect(page.locator("#write-visible")).to_contain_text("Visible in the read side")
        card = page.locator("#write-order .order-card")
        order_id = await card.get_attribute("data-order-id")
        await expect(page.locator(f'tr[data-order-id="{order_id}"]')).to_have_count(1)
        await expect(page.locator(f'tr[data-order-id="{bobs_id}"]')).to_have_count(0)
        await tab.screenshot(f"desk-customer-token-{engine.dialect.name}")
        assert tab.blocked == []
