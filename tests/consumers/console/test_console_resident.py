"""Residents in a real browser: two residents and a guardian sign in with eID tokens and see exactly
their own entries (and the guardian, the child's), never another's; a deferred entry appears only
once released; the log downloads as CSV and PDF; no document number reaches a page or a URL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page

from onceonly.broker.app import BrokerApp
from onceonly.consumers.console.server import start_console
from onceonly.v1 import governance_pb2
from tests.broker.test_agreement_lifecycle import PARKING, PARKING_CHECKS, RELEASE, act, agree, propose
from tests.broker.test_resident_access import Eid, eid, people, resident_broker  # noqa: F401
from tests.conftest import Platform, verify_request
from tests.consumers.console.conftest import Site
from tests.consumers.console.test_console import CONTRAST, UNLABELLED, open_page

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@pytest.fixture
async def resident_site(
    platform: Platform,
    resident_broker: BrokerApp,  # noqa: F811
    browser: Browser,
) -> AsyncIterator[Site]:
    console = await start_console(
        listen="127.0.0.1:0", broker=resident_broker.target, tls_dir=platform.pki.dir
    )
    try:
        yield Site(console.url, platform, resident_broker, browser)
    finally:
        await console.stop()


async def signed_in(site: Site, token: str, lang: str = "en-GB") -> Page:
    page = await site.person(None, lang=lang)
    await open_page(page, site.url + "/")
    await page.locator("textarea#token").fill(token)
    await page.locator("form[action='/signin/token'] button").click()
    await page.wait_for_url("**/me")
    return page


async def procedures(page: Page) -> list[str]:
    return await page.locator("table#accesses tbody tr[data-procedure]").evaluate_all(
        "rows => rows.map(r => r.dataset.procedure)"
    )


async def test_residents_and_a_guardian_see_exactly_their_entries(
    resident_site: Site,
    eid: Eid,  # noqa: F811
) -> None:
    site = resident_site
    ana, bruno, parent, child = people(4)
    stub = site.platform.stub(site.broker)
    for person in (ana, ana, bruno, child):
        await stub.Verify(verify_request(person), timeout=10)
    await propose(
        site.platform,
        site.broker,
        disclosure=governance_pb2.DISCLOSURE_DEFERRED,
        disclosure_until="2099-06-30",
    )
    await agree(site.platform, site.broker)
    await stub.Verify(verify_request(ana, procedure_code=PARKING, checks=PARKING_CHECKS), timeout=10)

    page = await signed_in(site, eid.token(ana))
    assert await page.locator("h1").inner_text() == "My access log"
    assert await procedures(page) == ["HOUSING-RENT-SUBSIDY", "HOUSING-RENT-SUBSIDY"], (
        "the deferred one hidden"
    )
    notice = await page.locator("[role=note]").inner_text()
    assert "kept 1825 days" in notice and "may be withheld" in notice
    row = await page.locator("table#accesses tbody tr").first.inner_text()
    assert "Madrid — Housing Office" in row and "Rent subsidy application" in row and "LAW" in row
    assert "Eligibility checks for the municipal rent subsidy." in row, "the procedure in words"
    content = await page.content()
    assert ana.document_number not in content and ana.document_number not in page.url
    assert await page.evaluate(UNLABELLED) == [] and await page.evaluate(CONTRAST) == []
    await site.shot(page, "resident")

    csv_text = await (await page.request.get(site.url + "/me.csv")).text()
    header, *lines = csv_text.strip().splitlines()
    assert header.startswith("when,organisation,unit,procedure") and len(lines) == 2
    pdf = await page.request.get(site.url + "/me.pdf")
    assert pdf.headers["content-type"] == "application/pdf" and (await pdf.body()).startswith(b"%PDF-")

    await page.locator("table#accesses").get_by_role("link", name="Proof of this request").first.click()
    await page.wait_for_url("**/proof/*")
    assert "Verification code" in await page.locator("main").inner_text()
    ana_proof = page.url

    other = await signed_in(site, eid.token(bruno))
    assert await procedures(other) == ["HOUSING-RENT-SUBSIDY"]
    assert await open_page(other, ana_proof) == 404, "another resident's proof is not theirs to open"
    assert await open_page(other, site.url + "/oversight") == 403

    guardian = await signed_in(site, eid.token(parent, child))
    assert await procedures(guardian) == []
    assert "No administration has consulted" in await guardian.locator("table#accesses").inner_text()
    await guardian.get_by_label("Whose access log").select_option("1")
    await guardian.get_by_role("button", name="Show").click()
    await guardian.wait_for_url("**/me?person=1")
    assert await procedures(guardian) == ["HOUSING-RENT-SUBSIDY"]
    assert child.document_number not in await guardian.content()
    await site.shot(guardian, "resident-guardian")
    assert await open_page(guardian, site.url + "/me?person=7") == 400

    await act(site.platform, site.broker, "oversight", RELEASE, reason="Investigation closed")
    await page.goto(site.url + "/me")
    assert await procedures(page) == [PARKING, "HOUSING-RENT-SUBSIDY", "HOUSING-RENT-SUBSIDY"]


async def test_the_access_log_in_spanish(resident_site: Site, eid: Eid) -> None:  # noqa: F811
    (person,) = people(1)
    await resident_site.platform.stub(resident_site.broker).Verify(verify_request(person), timeout=10)
    page = await signed_in(resident_site, eid.token(person), lang="es-ES")
    assert await page.locator("h1").inner_text() == "Mi registro de accesos"
    assert "se conservan 1825 días" in await page.locator("[role=note]").inner_text()
    titles = await page.locator("table#accesses .pill").all_inner_texts()
    assert titles and all(t for t in titles)
    await resident_site.shot(page, "resident-es")
