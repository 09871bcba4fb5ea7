"""The console in a real browser: Debian's Chromium, headless, driven by Playwright through
``executable_path`` (``make test`` finds or installs it with scripts/chromium.sh and passes it in
ONCEONLY_CHROMIUM). Each test gets a broker in front of the reference providers, the console in
front of the broker, and a browser; people sign in with the development CA's certificates. A
screenshot of each page a test looks at is saved under var/screenshots/."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from onceonly.broker.app import BrokerApp
from onceonly.consumers.console.server import ConsoleServer, start_console
from onceonly.pki import cert_path, key_path
from tests.conftest import Platform

SCREENSHOTS = Path(__file__).resolve().parents[3] / "var" / "screenshots"
PEOPLE = {
    # certificate name → (role, organisation), as the development CA issues them
    "housing-admin": ("consumer-admin", "L01280796"),
    "barcelona-admin": ("consumer-admin", "L08019030"),
    "registry-admin": ("provider-admin", "registry"),
    "tax-admin": ("provider-admin", "tax"),
    "employment-admin": ("provider-admin", "employment"),
    "oversight": ("oversight", "AEPD"),
}


def chromium() -> str:
    """Debian's Chromium: ONCEONLY_CHROMIUM (set by `make test`), or where the package puts it."""
    for candidate in (
        os.environ.get("ONCEONLY_CHROMIUM", ""),
        "/usr/lib/chromium/chromium",
        "/usr/bin/chromium",
    ):
        if candidate and shutil.which(candidate):
            return candidate
    pytest.fail("no Chromium: run `make test` (scripts/chromium.sh installs Debian's chromium)")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium())
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Site:
    """The console under test, and people opening it."""

    url: str
    platform: Platform
    broker: BrokerApp
    browser: Browser

    async def person(self, name: str | None, *, lang: str = "en-GB") -> Page:
        """A page in a fresh browser profile presenting ``name``'s certificate (None: none)."""
        certificates = []
        if name is not None:
            role, org = PEOPLE[name]
            self.platform.pki.issue(name, role=role, org=org)
            certificates = [
                {
                    "origin": self.url,
                    "certPath": str(cert_path(self.platform.pki.dir, name)),
                    "keyPath": str(key_path(self.platform.pki.dir, name)),
                }
            ]
        context: BrowserContext = await self.browser.new_context(
            client_certificates=certificates,  # type: ignore[arg-type]
            ignore_https_errors=True,  # the development CA is not the browser's (TLS is tested elsewhere)
            locale=lang,
            extra_http_headers={"Accept-Language": lang},
        )
        return await context.new_page()

    async def shot(self, page: Page, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
async def site(platform: Platform, broker: BrokerApp, browser: Browser) -> AsyncIterator[Site]:
    console: ConsoleServer = await start_console(
        listen="127.0.0.1:0", broker=broker.target, tls_dir=platform.pki.dir
    )
    try:
        yield Site(console.url, platform, broker, browser)
    finally:
        await console.stop()
