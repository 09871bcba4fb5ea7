"""Audit sampling, proofs and monthly reports in a real browser: oversight draws a sample and the
consumer justifies it from its page; a proof prints (HTML and PDF) and its code verifies on the
public page — until the record is edited; an agency's monthly report as a page and as CSV."""

from __future__ import annotations

import datetime as dt
import re
import zlib

import grpc
import pytest
import sqlalchemy as sa
from playwright.async_api import Page

from tests.conftest import verify_request
from tests.consumers.console.conftest import Site
from tests.consumers.console.test_console import CONTRAST, UNLABELLED, open_page

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
MADRID = "L01280796"


async def accessible(page: Page, what: str) -> None:
    assert await page.evaluate(UNLABELLED) == [], what
    assert await page.evaluate(CONTRAST) == [], what
    assert "Traceback" not in await page.content(), what


def pdf_text(body: bytes) -> str:
    """The text of a PDF's content streams (inflated where compressed)."""
    out = []
    for raw in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S):
        try:
            out.append(zlib.decompress(raw).decode("latin-1"))
        except zlib.error:
            out.append(raw.decode("latin-1"))
    return "".join(out)


async def test_a_sample_is_drawn_by_oversight_and_justified_by_the_consumer(site: Site) -> None:
    for _ in range(3):
        await site.platform.stub(site.broker).Verify(verify_request(), timeout=10)
    auditor = await site.person("oversight")
    await open_page(auditor, site.url + "/oversight/audit")
    await accessible(auditor, "/oversight/audit")
    await auditor.get_by_label("From (date)").fill("2026-12-10")
    await auditor.get_by_label("Until (date, inclusive)").fill("2026-12-01")
    await auditor.get_by_role("button", name="Draw").click()
    await auditor.wait_for_load_state()
    alert = await auditor.locator("[role=alert]").inner_text()
    assert "Until: must be later than since" in alert, "the field is named"
    assert await auditor.get_by_label("From (date)").input_value() == "2026-12-10", "nothing typed is lost"
    today = dt.datetime.now(dt.UTC).date()
    await auditor.get_by_label("From (date)").fill((today - dt.timedelta(days=1)).isoformat())
    await auditor.get_by_label("Until (date, inclusive)").fill(today.isoformat())

    await auditor.get_by_label("Consumer").select_option(MADRID)
    await auditor.get_by_label("How many requests").fill("2")
    await auditor.get_by_label("Seed (optional)").fill("audit-2026-12")
    await auditor.get_by_role("button", name="Draw").click()
    await auditor.wait_for_url("**/oversight/audit?sample=*")
    rows = auditor.locator("table#tasks tbody tr")
    assert await rows.count() == 2
    assert set(
        await auditor.locator("table#tasks tbody tr").evaluate_all("r => r.map(e => e.dataset.state)")
    ) == {"OPEN"}
    await site.shot(auditor, "oversight-audit")

    housing = await site.person("housing-admin")
    await open_page(housing, site.url + "/consumer/audit")
    await accessible(housing, "/consumer/audit")
    tasks = housing.locator("article.task")
    assert await tasks.count() == 2
    first = tasks.first
    await first.get_by_label("Justification").fill("Applicant 12345678Z asked for it")
    await first.get_by_role("button", name="Send justification").click()
    await housing.wait_for_load_state()
    assert "justification" in (await housing.locator("[role=alert]").inner_text()).lower()
    assert await housing.locator("article.task[data-state=OPEN]").count() == 2, "nothing recorded"

    await (
        housing.locator("article.task")
        .first.get_by_label("Justification")
        .fill("Case EXP-2026-0001: the applicant's rent subsidy")
    )
    await housing.locator("article.task").first.get_by_role("button", name="Send justification").click()
    await housing.wait_for_url("**/consumer/audit?done=1")
    assert await housing.locator(".notice").inner_text() == "Your justification was recorded."
    assert await housing.locator("article.task[data-state=JUSTIFIED]").count() == 1
    await site.shot(housing, "consumer-audit")

    await auditor.reload()
    states = await auditor.locator("table#tasks tbody tr").evaluate_all("r => r.map(e => e.dataset.state)")
    assert sorted(states) == ["JUSTIFIED", "OPEN"]
    assert "Case EXP-2026-0001" in await auditor.locator("table#tasks").inner_text()
    await open_page(auditor, site.url + "/governance/log")
    log = await auditor.locator("main").inner_text()
    assert "AUDIT_SAMPLE_DRAWN" in log and "AUDIT_TASK_JUSTIFIED" in log
    assert await open_page(housing, site.url + "/oversight/audit") == 403


async def test_a_proof_prints_and_its_code_verifies_until_the_record_is_edited(site: Site) -> None:
    answer = await site.platform.stub(site.broker).Verify(verify_request(), timeout=10)
    housing = await site.person("housing-admin")
    await open_page(housing, site.url + "/consumer")
    await housing.locator("table#latest").get_by_role("link", name="Proof of this request").first.click()
    await housing.wait_for_url(f"**/proof/{answer.trace_id}")
    await accessible(housing, "/proof")
    code = await housing.locator("#code").inner_text()
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", code)
    facts = await housing.locator("dl.facts").inner_text()
    assert "HOUSING-RENT-SUBSIDY" in facts and "EXP-2026-0001" in facts and answer.trace_id in facts
    assert await housing.locator("table", has_text="SHA-256").locator("tbody tr").count() >= 3
    await site.shot(housing, "proof")

    pdf = await housing.request.get(site.url + f"/proof/{answer.trace_id}/pdf")
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    body = await pdf.body()
    assert body.startswith(b"%PDF-") and code in pdf_text(body)

    barcelona = await site.person("barcelona-admin")
    assert await open_page(barcelona, site.url + f"/proof/{answer.trace_id}") == 403
    assert await open_page(barcelona, site.url + "/proof/no-such-trace") == 404

    anyone = await site.person(None)
    assert await open_page(anyone, site.url + f"/verify?code={code}") == 200
    await accessible(anyone, "/verify")
    result = await anyone.locator("section.result").inner_text()
    assert "matches a request recorded in the ledger, unaltered" in result
    assert "Madrid — Housing Office" in result and "12345678Z" not in await anyone.content()
    await site.shot(anyone, "verify")
    assert await open_page(anyone, site.url + "/verify?code=AAAA-AAAA-AAAA-AAAA") == 200
    assert "No request with this code" in await anyone.locator("section.result").inner_text()
    assert await open_page(anyone, site.url + "/verify?code=not-a-code") == 400
    assert "Verification code" in await anyone.locator("[role=alert]").inner_text()

    traces = sa.table("trace_records", sa.column("trace_id"), sa.column("purpose_text"))
    with site.broker.engine.begin() as conn:  # whoever holds the database edits the purpose
        conn.execute(
            sa.update(traces).where(traces.c.trace_id == answer.trace_id).values(purpose_text="Other")
        )
    await open_page(anyone, site.url + f"/verify?code={code.lower()}")
    assert "it was altered" in await anyone.locator("section.result.bad").inner_text()


async def test_a_monthly_report_as_a_page_and_as_csv(site: Site) -> None:
    stub = site.platform.stub(site.broker)
    for _ in range(3):
        await stub.Verify(verify_request(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Verify(verify_request(law="Ley 99/2099 art. 1"), timeout=10)
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")

    housing = await site.person("housing-admin")
    await open_page(housing, site.url + "/reports")
    await accessible(housing, "/reports")
    assert month in await housing.locator("h1").inner_text()
    row = housing.locator("tr", has_text="HOUSING-RENT-SUBSIDY").first
    assert (await row.locator("td").all_inner_texts())[1:] == ["3", "1"]
    assert (
        "LEGAL_REFERENCE_NOT_IN_AGREEMENT" in await housing.locator("table", has_text="Reason").inner_text()
    )
    assert await housing.locator("svg.chart rect").count() == 1
    assert await housing.locator("#as-provider").count() == 0
    await site.shot(housing, "report")
    csv_text = await (await housing.request.get(site.url + "/reports.csv?org=AEPD")).text()
    lines = csv_text.strip().splitlines()
    assert lines[0] == "organisation,month,section,key,detail,value"
    assert f"{MADRID},{month},requests_by_procedure,HOUSING-RENT-SUBSIDY,GRANTED,3" in lines
    assert f"{MADRID},{month},requests_by_procedure,HOUSING-RENT-SUBSIDY,DENIED,1" in lines, (
        "an agency's staff get their own report, whatever org is asked"
    )
    assert any(
        line.startswith(f"{MADRID},{month},certificates_not_brought,tax.compliance/v1,,3") for line in lines
    )

    tax = await site.person("tax-admin")
    await open_page(tax, site.url + "/reports")
    served = await tax.locator("section[aria-labelledby=as-provider]").inner_text()
    assert "Madrid — Housing Office" in served and "tax.compliance/v1" in served
    assert "registry.residence/v1" not in served and await tax.locator("#as-consumer").count() == 0

    auditor = await site.person("oversight")
    assert await open_page(auditor, site.url + f"/reports?org={MADRID}&month={month}") == 200
    assert await auditor.locator("#as-consumer").count() == 1
    assert await open_page(auditor, site.url + "/reports?org=L01280796&month=2026-13") == 400
    assert "Month" in await auditor.locator("[role=alert]").inner_text()
    assert await open_page(auditor, site.url + "/reports?org=%22%0Aevil") == 400
    bad = await auditor.request.get(site.url + "/reports.csv?month=someday&org=L01280796")
    assert bad.status == 400 and "month" in await bad.text()
