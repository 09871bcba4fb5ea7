"""Opening console pages from Python, as a browser would (HTTPS, a client certificate): the demo
uses it to check the console it started, and to wait for it."""

from __future__ import annotations

import asyncio
import html
import re
import ssl
import time
import urllib.error
import urllib.request

from onceonly.pki import ClientTls

__all__ = ["heading", "open_page", "wait_for_console"]


def _context(tls: ClientTls) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.ca))
    if tls.cert is not None and tls.key is not None:
        context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


def _get(url: str, tls: ClientTls, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=_context(tls), timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")


async def open_page(url: str, tls: ClientTls, timeout: float = 10.0) -> tuple[int, str]:
    """The status and HTML of ``url`` opened with ``tls``'s certificate (``url`` is https only)."""
    if not url.startswith("https://"):
        raise ValueError("the console is served over HTTPS only")
    return await asyncio.to_thread(_get, url, tls, timeout)


async def wait_for_console(url: str, tls: ClientTls, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers; ``TimeoutError`` naming the address otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await open_page(url, tls, timeout=2.0)
            return
        except (OSError, urllib.error.URLError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the console at {url} did not answer within {timeout:.0f} s: {exc}"
                ) from None
            await asyncio.sleep(0.1)


def heading(page: str) -> str:
    """The text of a page's first ``<h1>``."""
    found = re.search(r"<h1[^>]*>(.*?)</h1>", page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip() if found else ""
