"""Opening console pages from Python, as a browser would (HTTPS, a client certificate): the demo
uses it to check the console it started, and to wait for it."""

from __future__ import annotations

import asyncio
import html
import http.cookiejar
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from onceonly.pki import ClientTls

__all__ = ["heading", "open_page", "open_page_with_token", "wait_for_console"]


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


def _get_with_token(url: str, token: str, tls: ClientTls, timeout: float) -> tuple[int, str]:
    """Sign in as a browser does (the sign-in form, its CSRF token, the session cookie), then GET."""
    base = url.split("/", 3)
    root = "/".join(base[:3])
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=_context(tls)),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
    )
    with opener.open(root + "/", timeout=timeout) as response:
        found = re.search(r'name="csrf" value="([^"]+)"', response.read().decode("utf-8", "replace"))
    if found is None:
        return 500, "the sign-in page has no CSRF token"
    form = urllib.parse.urlencode({"csrf": found.group(1), "token": token}).encode()
    try:
        with opener.open(root + "/signin/token", data=form, timeout=timeout):
            pass
        with opener.open(url, timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")


async def open_page_with_token(
    url: str, token: str, tls: ClientTls, timeout: float = 10.0
) -> tuple[int, str]:
    """The status and HTML of ``url`` for a person signed in with ``token`` (no client certificate)."""
    if not url.startswith("https://"):
        raise ValueError("the console is served over HTTPS only")
    return await asyncio.to_thread(_get_with_token, url, token, tls, timeout)


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
