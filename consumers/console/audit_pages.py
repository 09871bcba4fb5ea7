"""The console's audit sampling, proofs and public verification pages (a mixin of ``Console``).

Oversight draws samples at ``/oversight/audit``; a consumer's administrators answer their tasks at
``/consumer/audit``; ``/proof/{trace}`` is the printable proof of one request (``…/pdf`` the same
as a PDF, drawn with fpdf2); ``/verify`` is public: anyone with a proof's code checks it against
the ledger, through the console's own identity. The broker decides every one of these: the
console passes on what a person asks and shows what the broker answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from fpdf import FPDF
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from onceonly.consumers.client import BrokerError, InvalidArgument, Unavailable
from onceonly.consumers.console.base import Pages, Person
from onceonly.consumers.console.i18n import translate
from onceonly.consumers.oversight import TASK_STATES, Proof

DEFAULT_SAMPLE = 20
DRAW_FIELDS = {
    "consumer_organization_id": "consumer",
    "since": "since",
    "until": "until",
    "size": "size",
    "seed": "seed",
    "days_to_answer": "days",
}
"""The broker's names of a draw's fields → the form's."""
TASKS_SHOWN = 200


def _errors(exc: BrokerError) -> list[tuple[str, str]]:
    return [(f.split(".")[-1], d) for f, d in exc.field_violations] or [("form", exc.message)]


async def oversight_audit(console: Pages, request: Request, person: Person) -> Response:
    """Draw a sample (POST) or see the samples drawn and their tasks (GET)."""
    values: dict[str, str] = {}
    errors: list[tuple[str, str]] = []
    client = console.relay(person)
    if request.method == "POST":
        form = await console.check_csrf(request)
        values = {
            k: str(form.get(k, "")).strip() for k in ("consumer", "since", "until", "size", "seed", "days")
        }
        since = until = None
        try:
            d = dt.date.fromisoformat(values["since"])
            since = dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
        except ValueError:
            errors.append(("since", "must be a date YYYY-MM-DD"))
        try:
            d = dt.date.fromisoformat(values["until"]) + dt.timedelta(days=1)
            until = dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
        except ValueError:
            errors.append(("until", "must be a date YYYY-MM-DD"))
        size = _number(values["size"] or str(DEFAULT_SAMPLE))
        if size is None:
            errors.append(("size", "must be a whole number"))
        days = _number(values["days"] or "0")
        if days is None:
            errors.append(("days", "must be a whole number"))
        if not errors:
            assert since is not None and until is not None and size is not None and days is not None
            try:
                sample = await client.draw_audit_sample(
                    since=since,
                    until=until,
                    size=size,
                    consumer_organization_id=values["consumer"],
                    seed=values["seed"],
                    days_to_answer=days,
                )
            except BrokerError as exc:
                if exc.code not in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
                    raise
                errors = [(DRAW_FIELDS.get(f, "form"), d) for f, d in _errors(exc)]
            else:
                return RedirectResponse(f"/oversight/audit?sample={sample.sample_id}", status_code=303)
    q = request.query_params
    state = q.get("state", "").upper()
    tasks = await client.audit_tasks(
        sample_id=q.get("sample", ""),
        state=state if state in TASK_STATES else "",
        page_size=TASKS_SHOWN,
    )
    samples: dict[str, dict[str, int]] = {}
    for task in tasks:
        counts = samples.setdefault(task.sample_id, dict.fromkeys(TASK_STATES, 0))
        counts[task.state] += 1
    today = dt.datetime.now(dt.UTC).date()
    defaults = {
        "since": (today - dt.timedelta(days=30)).isoformat(),
        "until": today.isoformat(),
        "size": str(DEFAULT_SAMPLE),
        "days": "15",
    }
    return console.render(
        request,
        "audit_oversight.html",
        person,
        400 if errors else 200,
        values={**defaults, **values},
        errors=errors,
        tasks=tasks,
        samples=samples,
        sample=q.get("sample", ""),
        names=await console.names(),
    )


async def consumer_audit(console: Pages, request: Request, person: Person) -> Response:
    """A consumer's tasks (GET), and its answer to one (POST)."""
    client = console.relay(person)
    errors: list[tuple[str, str]] = []
    answered = ""
    if request.method == "POST":
        form = await console.check_csrf(request)
        task_id = str(form.get("task", ""))
        try:
            await client.justify_audit_task(task_id, str(form.get("justification", "")))
        except BrokerError as exc:
            if exc.code not in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND"):
                raise
            errors = [(f"justification-{task_id}", d) for _, d in _errors(exc)]
        else:
            return RedirectResponse("/consumer/audit?done=1", status_code=303)
    else:
        answered = request.query_params.get("done", "")
    tasks = await client.audit_tasks(page_size=TASKS_SHOWN)
    order = {"OVERDUE": 0, "OPEN": 1, "JUSTIFIED": 2}
    tasks.sort(key=lambda t: (order[t.state], t.deadline))
    return console.render(
        request,
        "audit_consumer.html",
        person,
        400 if errors else 200,
        tasks=tasks,
        errors=errors,
        answered=answered,
    )


async def proof_page(console: Pages, request: Request, person: Person) -> Response:
    proof = await _proof(console, request, person)
    if proof is None:
        return console.render(request, "error.html", person, 404, message_key="not_found")
    return console.render(request, "proof.html", person, proof=proof, names=await console.names())


async def proof_pdf(console: Pages, request: Request, person: Person) -> Response:
    proof = await _proof(console, request, person)
    if proof is None:
        return console.render(request, "error.html", person, 404, message_key="not_found")
    lang = console.language(request)
    pdf = proof_document(proof, lambda key: translate(lang, key), str(request.base_url))
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"content-disposition": f'inline; filename="proof-{proof.trace.trace_id}.pdf"'},
    )


async def _proof(console: Pages, request: Request, person: Person) -> Proof | None:
    try:
        return await console.relay(person).proof(request.path_params["trace_id"])
    except BrokerError as exc:
        if exc.code in ("NOT_FOUND", "INVALID_ARGUMENT"):
            return None
        raise


async def verify_page(console: Pages, request: Request) -> Response:
    """Public: does a verification code match the ledger? (GET ``?code=``; the code is no secret
    of the resident's: it names a record, not a person.)"""
    code = request.query_params.get("code", "").strip()[:64]
    found = None
    error = ""
    if code:
        try:
            found = await console.client.verify_proof(code)
        except InvalidArgument as exc:
            error = exc.field_violations[0][1] if exc.field_violations else exc.message
        except Unavailable:
            return console.render(request, "error.html", None, 503, message_key="broker_unavailable")
    return console.render(
        request, "verify.html", None, 400 if error else 200, code=code, found=found, error=error
    )


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 7 else None


def proof_document(proof: Proof, say: Callable[[str], str], base_url: str) -> bytes:
    """The proof as a one-page PDF (core fonts: Latin-1 text; anything else is replaced)."""
    tr = proof.trace

    def text(value: str) -> str:
        return value.encode("latin-1", "replace").decode("latin-1")

    pdf = FPDF(format="A4")
    pdf.set_title(f"onceonly proof {tr.trace_id}")
    pdf.set_creator("onceonly console")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, text(say("proof_title")), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    rows = [
        (say("verification_code"), proof.verification_code),
        (say("when"), tr.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        (say("consumer"), f"{proof.consumer_organization_name} ({tr.consumer_organization_id})"),
        (say("unit"), tr.consumer_unit),
        (say("officer"), tr.officer_id),
        (say("procedure"), tr.procedure_code),
        (say("purpose"), tr.purpose_text),
        (say("case_file"), tr.case_file_id or "-"),
        (say("legal_basis"), f"{tr.legal_basis_kind} {tr.legal_basis_reference}".strip()),
        (say("decision"), tr.decision + (f" ({tr.denial_reason})" if tr.denial_reason else "")),
        (say("trace"), tr.trace_id),
        (say("chain"), f"{tr.chain_id} #{tr.seq}"),
        (say("record_hash"), proof.record_hash),
    ]
    for label, value in rows:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(45, 6, text(label))
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(0, 6, text(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 8, text(say("attestations")), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Courier", "", 8)
    for certificate_type, provider, digest in proof.attestations:
        pdf.multi_cell(
            0, 5, text(f"{certificate_type} ({provider})  SHA-256 {digest}"), new_x="LMARGIN", new_y="NEXT"
        )
    if not proof.attestations:
        pdf.cell(0, 5, "-", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", "", 9)
    verify = f"{base_url}verify?code={proof.verification_code}"
    pdf.multi_cell(0, 5, text(f"{say('verify_help')} {verify}"), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
