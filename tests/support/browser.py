"""Real headless Chromium for the browser tests (Debian's /usr/bin/chromium, driven by
Playwright; Playwright's own browser download is not used), and the pages' artifacts.

Every page runs with the outside world cut off: a request to anything but this machine is
aborted and recorded, so a test can assert that a page needed nothing from a CDN.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

from graph.runtime.web import WEB_DIST

CHROMIUM = Path(os.environ.get("ORDERGRAPH_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
LOCAL = re.compile(r"^(https?|wss?)://(127\.0\.0\.1|localhost)(:\d+)?/")


def require_browser() -> None:
    """Skip locally, fail under CI, when the browser or the built pages are missing."""
    missing = [
        what
        for what, present in (
            (f"Chromium at {CHROMIUM} (make browser-deps)", CHROMIUM.exists()),
            (f"the built pages in {WEB_DIST} (make web)", (WEB_DIST / "manifest.json").exists()),
        )
        if not present
    ]
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class OfflinePage:
    page: Page
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=path, full_page=True)
        return path


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    require_browser()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def offline_page(browser: Browser) -> AsyncIterator[OfflinePage]:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    offline = OfflinePage(page)

    async def only_this_machine(route: Route) -> None:
        url = route.request.url
        if LOCAL.match(url) or url.startswith("data:"):
            await route.continue_()
        else:
            offline.blocked.append(url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_this_machine)
    page.on("pageerror", lambda error: offline.errors.append(str(error)))
    try:
        yield offline
    finally:
        await context.close()
