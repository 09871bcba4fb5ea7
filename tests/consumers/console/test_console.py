"""The console as people use it, in a real browser: sign-in by certificate and by token, each role's
pages (and 403 outside them), an approval that puts an agreement in force, trace search with a bad
filter named, a resident report that is a POST and is traced, the ledger and the governance log,
CSRF, cookie flags and headers, Spanish, and accessibility basics."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from playwright.async_api import Page

from onceonly.v1 import governance_pb2
from tests.broker.test_agreement_lifecycle import AGREEMENT, propose, stub
from tests.broker.test_auth import Idp, idp  # noqa: F401
from tests.conftest import resident, verify_request
from tests.consumers.console.conftest import Site

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

JOB_SEEKER: dict[str, Any] = {
    "procedure_codes": ["JOB-SEEKER-SUPPORT"],
    "master_agreement_id": "employment-services",
    "certificate_type_ids": ["employment.unemployment-status/v1"],
    "laws": ["Ley 3/2023 art. 3"],
}


async def open_page(page: Page, url: str) -> int:
    response = await page.goto(url)
    assert response is not None
    return response.status


async def test_each_role_signs_in_with_its_certificate_and_sees_its_pages(site: Site) -> None:
    anonymous = await site.person(None)
    assert await open_page(anonymous, site.url + "/") == 200
    assert await anonymous.locator("h1").inner_text() == "Sign in"
    await site.shot(anonymous, "signin")
    expected = {
        "tax-admin": ("Tax Agency", ["Who used my data", "Monthly report", "Governance log"]),
        "housing-admin": (
            "Madrid — Housing Office",
            ["My requests", "Audit tasks", "Monthly report", "Governance log"],
        ),
        "oversight": (
            "Data Protection Agency",
            [
                "Trace search",
                "Resident report",
                "Ledger integrity",
                "Audit sampling",
                "Monthly report",
                "Governance log",
            ],
        ),
    }
    for name, (organisation, pages) in expected.items():
        page = await site.person(name)
        assert await open_page(page, site.url + "/") == 200
        assert await page.locator("h1").inner_text() == organisation
        assert await page.locator("header nav a").all_inner_texts() == pages
        await site.shot(page, f"home-{name}")


async def test_a_page_outside_the_role_is_403_and_logged(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    page = await site.person("housing-admin")
    with caplog.at_level(logging.WARNING, logger="onceonly.consumers.console.app"):
        assert await open_page(page, site.url + "/oversight") == 403
    assert "not for your role" in await page.locator("main").inner_text()
    assert any(r.getMessage() == "console page outside the role" for r in caplog.records)
    anonymous = await site.person(None)
    await open_page(anonymous, site.url + "/provider")
    assert anonymous.url == site.url + "/", "not signed in: back to the sign-in page"


async def test_an_approval_in_the_browser_puts_an_agreement_in_force(site: Site) -> None:
    await propose(site.platform, site.broker, **JOB_SEEKER)
    page = await site.person("employment-admin")
    await open_page(page, site.url + "/provider")
    pending = page.locator("article.pending")
    assert await pending.count() == 1 and AGREEMENT in await pending.inner_text()
    await site.shot(page, "provider-pending")

    await pending.get_by_role("button", name="Veto").click()  # no reason: refused, named
    assert "reason" in (await page.locator(".error").inner_text()).lower()
    await page.locator("article.pending").get_by_role("button", name="Approve").click()
    await page.wait_for_url("**/provider?done=approve")
    assert await page.locator(".notice").inner_text() == "Done."
    listed = await stub(site.platform, site.broker, "oversight").ListAgreements(
        governance_pb2.ListAgreementsRequest(agreement_id=AGREEMENT), timeout=5
    )
    [version] = listed.agreements
    assert version.state == governance_pb2.AGREEMENT_STATE_IN_FORCE
    assert [(d.provider_id, d.decision) for d in version.decisions] == [
        ("employment", governance_pb2.AGREEMENT_ACTION_APPROVE)
    ]
    assert await page.locator("article.pending").count() == 0
    assert "IN_FORCE" in await page.locator("table", has_text=AGREEMENT).inner_text()


async def test_a_provider_sees_who_used_its_data(site: Site) -> None:
    await site.platform.stub(site.broker).Verify(verify_request(), timeout=10)
    page = await site.person("tax-admin")
    await open_page(page, site.url + "/provider")
    text = await page.locator("main").inner_text()
    assert "Madrid — Housing Office" in text and "HOUSING-RENT-SUBSIDY" in text
    assert "tax.compliance/v1" in text and "registry.residence/v1" not in text, "only its own checks"
    assert await page.locator("dl.figures dd").count() == 3  # p50, p90, p99
    await site.shot(page, "provider")


async def test_a_consumer_sees_its_denials_with_what_to_do(site: Site) -> None:
    stub_ = site.platform.stub(site.broker)
    await stub_.Verify(verify_request(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub_.Verify(verify_request(law="Ley 99/2099 art. 1"), timeout=10)
    page = await site.person("housing-admin")
    await open_page(page, site.url + "/consumer")
    denial = page.locator("article.denial")
    assert "LEGAL_REFERENCE_NOT_IN_AGREEMENT" in await denial.inner_text()
    assert "Cite one of the laws your agreement lists" in await denial.inner_text()
    row = page.locator("tr", has_text="HOUSING-RENT-SUBSIDY").first
    assert (await row.locator("td").all_inner_texts())[1:] == ["1", "1"]
    await site.shot(page, "consumer")


async def test_oversight_searches_traces_and_a_bad_filter_is_named(site: Site) -> None:
    for _ in range(2):
        await site.platform.stub(site.broker).Verify(verify_request(), timeout=10)
    page = await site.person("oversight")
    await open_page(page, site.url + "/oversight")
    await page.get_by_label("Procedure").fill("HOUSING-RENT-SUBSIDY")
    await page.get_by_label("Legal basis").select_option("LAW")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**/oversight?*procedure=HOUSING-RENT-SUBSIDY*")
    assert await page.locator("table.traces tbody tr").count() == 2
    await site.shot(page, "oversight-search")

    assert await open_page(page, site.url + "/oversight?outcome=NOPE") == 400
    assert "outcome" in await page.locator("[role=alert]").inner_text()
    assert await open_page(page, site.url + "/oversight?since=yesterday") == 400
    assert "since" in await page.locator("[role=alert]").inner_text()
    assert "Traceback" not in await page.content()


async def test_a_resident_report_is_posted_never_in_a_url_and_traced(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    person = resident()
    await site.platform.stub(site.broker).Verify(verify_request(person), timeout=10)
    page = await site.person("oversight")
    await open_page(page, site.url + "/oversight/resident")
    await page.get_by_label("Document type").select_option(person.document_type)
    await page.get_by_label("Document number").fill(person.document_number)
    await page.get_by_label("Why you look").fill("Complaint 2026/77")
    with caplog.at_level(logging.DEBUG):
        await page.get_by_role("button", name="Look up a resident").click()
        await page.wait_for_load_state()
    assert page.url == site.url + "/oversight/resident"
    assert person.document_number not in page.url
    assert "HOUSING-RENT-SUBSIDY" in await page.locator("table").inner_text()
    assert "was itself recorded in the ledger" in await page.locator(".notice").inner_text()
    assert await page.get_by_label("Document number").input_value() == "", "not echoed back"
    assert [r["procedure_code"] for r in site.platform.trace_rows()][-1] == "OVERSIGHT-RESIDENT-REPORT"
    assert not any(person.document_number in r.getMessage() for r in caplog.records)
    await site.shot(page, "oversight-resident")


async def test_ledger_integrity_and_the_governance_log(site: Site) -> None:
    await site.platform.stub(site.broker).Verify(verify_request(), timeout=10)
    page = await site.person("oversight")
    await open_page(page, site.url + "/oversight/ledger")
    assert "governance-log" in await page.locator("table").inner_text()
    await site.shot(page, "oversight-ledger")
    await open_page(page, site.url + "/governance/log")
    assert "MASTER_AGREEMENT_REGISTERED" in await page.locator("table").inner_text()
    await site.shot(page, "governance-log")


async def test_forms_need_their_csrf_token_and_the_session_is_strict(site: Site) -> None:
    page = await site.person("employment-admin")
    response = await page.goto(site.url + "/provider")
    assert response is not None
    headers = await response.all_headers()
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    [cookie] = await page.context.cookies()
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
    forged: Any = await page.request.post(
        site.url + "/provider/act", form={"agreement": AGREEMENT, "action": "APPROVE", "version": "0"}
    )
    assert forged.status == 403


async def test_sign_in_with_a_token(site: Site, idp: Idp) -> None:  # noqa: F811
    app = await site.platform.start_broker(jwt_issuers=idp.issuers_toml)
    from onceonly.consumers.console.server import start_console

    console = await start_console(listen="127.0.0.1:0", broker=app.target, tls_dir=site.platform.pki.dir)
    try:
        page = await site.person(None)
        await open_page(page, console.url + "/")
        await page.get_by_label("Token", exact=True).fill("not-a-token")
        await page.get_by_role("button", name="Sign in").click()
        assert await page.locator("[role=alert]").count() == 1, "a bad token is refused, named"
        await page.get_by_label("Token", exact=True).fill(idp.mint())
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(console.url + "/")
        assert await page.locator("h1").inner_text() == "Madrid — Housing Office"
        assert "consumer" in await page.locator(".who").inner_text()
        await page.get_by_role("button", name="Sign out").click()
        assert await page.locator("h1").inner_text() == "Sign in"
    finally:
        await console.stop()


CONTRAST = """
() => {
  const lum = (c) => { const [r, g, b] = c.match(/\\d+/g).slice(0, 3).map(Number).map(v => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const bg = (el) => { while (el) { const c = getComputedStyle(el).backgroundColor;
    if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c; el = el.parentElement; }
    return 'rgb(255, 255, 255)'; };
  const worst = [];
  for (const el of document.querySelectorAll('h1, h2, p, td, th, label, a, button')) {
    if (!el.offsetParent) continue;
    const a = lum(getComputedStyle(el).color), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push(`${el.tagName} ${ratio.toFixed(2)} ${el.textContent.trim().slice(0, 30)}`);
  }
  return worst;
}
"""
UNLABELLED = """
() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => !(el.id && document.querySelector(`label[for="${el.id}"]`)) && !el.getAttribute('aria-label'))
  .map(el => el.name)
"""


async def test_pages_in_spanish_with_labels_contrast_and_keyboard(site: Site) -> None:
    anonymous = await site.person(None, lang="es-ES")
    await open_page(anonymous, site.url + "/")
    assert await anonymous.locator("h1").inner_text() == "Iniciar sesión"
    assert await anonymous.locator("html").get_attribute("lang") == "es"
    page = await site.person("oversight")
    await open_page(page, site.url + "/?lang=es")
    assert await page.locator("header nav a").first.inner_text() == "Búsqueda de trazas"
    await site.shot(page, "home-oversight-es")
    await open_page(page, site.url + "/?lang=en")
    for path in ("/oversight", "/oversight/resident", "/oversight/ledger", "/governance/log"):
        await open_page(page, site.url + path)
        assert await page.evaluate(UNLABELLED) == [], path
        assert await page.evaluate(CONTRAST) == [], path
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.className") == "skip", path


async def test_open_data_needs_no_sign_in_and_withholds_small_counts(site: Site) -> None:
    stub_ = site.platform.stub(site.broker)
    for _ in range(10):
        await stub_.Verify(verify_request(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub_.Verify(
            verify_request(organization_id="L08019030", checks=(("tax.compliance/v1", {}),)), timeout=10
        )
    page = await site.person(None)
    assert await open_page(page, site.url + "/open-data") == 200
    assert await page.locator("h1").inner_text() == "Open data"
    housing = page.locator("tr", has_text="registry.residence/v1").first
    cells = await housing.locator("td").all_inner_texts()
    assert cells[1] == "Madrid — Housing Office" and cells[-1] == "10"
    denied = page.locator("tr", has_text="DENIED").first
    assert (await denied.locator("td").all_inner_texts())[-1] == "< 10", "fewer than 10: withheld"
    impact = page.locator("table", has_text="Certificates not brought")
    assert "40" in await impact.inner_text()  # 4 verified checks in each of the 10 requests
    assert await page.locator("svg[role=img] rect").count() >= 1
    await site.shot(page, "open-data")

    csv_text = await (await page.request.get(site.url + "/open-data.csv")).text()
    header, *lines = csv_text.strip().splitlines()
    assert (
        header
        == "day,organisation,procedure,certificate_type,legal_basis_kind,result,checks,requests,suppressed"
    )
    assert any(line.endswith(",,,yes") and "DENIED" in line for line in lines)
    data = await (await page.request.get(site.url + "/open-data.json")).json()
    assert data["minimum_count"] == 10
    assert {f["suppressed"] for f in data["facts"]} == {True, False}
    assert all(f["checks"] is None for f in data["facts"] if f["suppressed"])
    bad = await page.request.get(site.url + "/open-data.json?since=soon")
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "since"


async def test_a_consumer_proposes_an_agreement_from_its_page(site: Site) -> None:
    page = await site.person("housing-admin")
    await open_page(page, site.url + "/consumer")
    await page.get_by_role("link", name="Propose an agreement").click()

    async def fill(procedures: str) -> None:
        await page.get_by_label("Agreement", exact=True).fill("madrid-job-seekers")
        await page.get_by_label("Master agreement").select_option("employment-services")
        await page.get_by_label("Procedures").fill(procedures)
        await page.get_by_label("employment.unemployment-status/v1").check()
        await page.get_by_label("LAW", exact=True).check()
        await page.get_by_label("Laws it may cite").fill("Ley 3/2023 art. 3")
        await page.get_by_label("From (date)").fill("2026-01-01")
        await page.get_by_label("Responsible unit").fill("Employment desk")
        await page.get_by_label("Accountable (a named role)").fill("Head of Social Services")
        await page.get_by_label("Data-protection officer (consulted)").fill("DPO, Madrid City Council")
        await page.get_by_role("button", name="Propose an agreement").click()
        await page.wait_for_load_state()

    await fill("PARKING-PERMIT")  # beyond the master agreement: refused, the clause named
    alert = await page.locator("[role=alert]").inner_text()
    assert "procedure_codes" in alert and "JOB-SEEKER-SUPPORT" in alert
    assert await page.get_by_label("Procedures").input_value() == "PARKING-PERMIT", "nothing typed is lost"
    await fill("JOB-SEEKER-SUPPORT")
    assert "madrid-job-seekers v1: PROPOSED, employment" in await page.locator(".notice").inner_text()
    await site.shot(page, "consumer-propose")
    listed = await stub(site.platform, site.broker, "oversight").ListAgreements(
        governance_pb2.ListAgreementsRequest(agreement_id="madrid-job-seekers"), timeout=5
    )
    assert [(a.version, a.state, a.proposed_by) for a in listed.agreements] == [
        (1, governance_pb2.AGREEMENT_STATE_PROPOSED, "L01280796")
    ]
