"""The console's page for residents: their own access log (``/me``), as CSV and as PDF.

A resident signs in with the token of their eID provider; the broker reads who they are from it,
and whom they represent. The page never carries a document number: the person whose log is shown
is chosen by their place in the token's list (``?person=1``), labelled with the document's last
characters only. Every view is traced by the broker; so is each export (it reads the log again).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from fpdf import FPDF
from starlette.requests import Request
from starlette.responses import Response

from onceonly.consumers.client import BrokerError
from onceonly.consumers.console.base import Pages, Person
from onceonly.consumers.console.i18n import translate
from onceonly.consumers.resident import AccessLog, LoggedAccess

EXPORT_PAGES = 20
"""An export reads at most this many pages of 500 entries."""


def _person(request: Request) -> int:
    text = request.query_params.get("person", "0")
    return int(text) if text.isdigit() and len(text) < 4 else -1


async def my_log(console: Pages, request: Request, person: Person) -> Response:
    lang = console.language(request)
    index = _person(request)
    error = ""
    log: AccessLog | None = None
    if index < 0:
        error = "person"
    else:
        try:
            log = await console.relay(person).access_log(
                person=index, page_token=request.query_params.get("page", ""), language=lang
            )
        except BrokerError as exc:
            if exc.code != "INVALID_ARGUMENT":
                raise
            error = exc.field_violations[0][0] if exc.field_violations else "person"
    next_url = ""
    if log is not None and log.next_page_token:
        next_url = f"/me?person={log.person}&page={log.next_page_token}"
    label = dict(log.people).get(log.person, "") if log is not None else ""
    return console.render(
        request,
        "me.html",
        person,
        400 if error else 200,
        log=log,
        error=error,
        next_url=next_url,
        label=label,
    )


async def _everything(
    console: Pages, request: Request, person: Person
) -> tuple[AccessLog, list[LoggedAccess]]:
    index = max(_person(request), 0)
    client = console.relay(person)
    lang = console.language(request)
    log = await client.access_log(person=index, page_size=500, language=lang)
    entries = list(log.accesses)
    for _ in range(EXPORT_PAGES - 1):
        if not log.next_page_token:
            break
        log = await client.access_log(
            person=index, page_size=500, page_token=log.next_page_token, language=lang
        )
        entries += log.accesses
    return log, entries


COLUMNS = (
    "when",
    "organisation",
    "unit",
    "procedure",
    "purpose",
    "legal_basis",
    "certificates",
    "providers",
    "officer_authenticated",
    "decision",
    "trace",
)


def _row(a: LoggedAccess) -> list[str]:
    return [
        a.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        a.organization_name,
        a.unit,
        f"{a.procedure_name} ({a.procedure_code})" if a.procedure_name else a.procedure_code,
        a.purpose_text,
        f"{a.legal_basis_kind} {a.legal_basis_reference}".strip(),
        "; ".join(title for _, title in a.certificates),
        "; ".join(a.provider_names),
        "yes" if a.officer_identification == "TOKEN" else "no",
        a.decision + (f" ({a.denial_reason})" if a.denial_reason else ""),
        a.trace_id,
    ]


async def my_log_csv(console: Pages, request: Request, person: Person) -> Response:
    _, entries = await _everything(console, request, person)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(_row(a) for a in entries)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="my-access-log.csv"'},
    )


async def my_log_pdf(console: Pages, request: Request, person: Person) -> Response:
    log, entries = await _everything(console, request, person)
    lang = console.language(request)
    pdf = access_log_document(log, entries, lambda key, **v: translate(lang, key, **v))
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"content-disposition": 'attachment; filename="my-access-log.pdf"'},
    )


def access_log_document(log: AccessLog, entries: list[LoggedAccess], say: Callable[..., str]) -> bytes:
    """The access log as a PDF (core fonts: Latin-1 text; anything else is replaced)."""

    def text(value: str) -> str:
        return value.encode("latin-1", "replace").decode("latin-1")

    pdf = FPDF(format="A4")
    pdf.set_title("onceonly access log")
    pdf.set_creator("onceonly console")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    label = dict(log.people).get(log.person, "")
    pdf.multi_cell(0, 9, text(f"{say('my_log_page')} · {label}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(0, 5, text(say("retention_note", days=log.retention_days)), new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 5, text(say("withheld_note")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for a in entries:
        (
            when,
            organisation,
            unit,
            procedure,
            purpose,
            basis,
            certificates,
            providers,
            officer,
            decision,
            trace,
        ) = _row(a)
        pdf.set_font("Helvetica", "B", 10)
        pdf.multi_cell(0, 6, text(f"{when} · {organisation} · {decision}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)
        for key, value in (
            ("unit", unit),
            ("procedure", procedure),
            ("purpose", purpose),
            ("legal_basis", basis),
            ("certificate_type", certificates),
            ("provider", providers),
            ("officer_authenticated", say("yes") if officer == "yes" else say("no")),
            ("trace", trace),
        ):
            pdf.multi_cell(0, 5, text(f"{say(key)}: {value or '-'}"), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    if not entries:
        pdf.multi_cell(0, 6, text(say("no_entries")), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
