"""The web console: pages for provider agencies, consumer agencies and oversight bodies, served over
the broker's gRPC services.

The console decides nothing about data. A person signs in with the client certificate their browser
presents to the console's HTTPS port, or with a token from their organisation's identity provider;
every call the console makes to the broker carries that credential (relayed through the console's
own ``OU=console`` certificate, see ``onceonly.broker.auth``), and the broker decides what it may
see and do. The console only chooses which pages to offer a role: a page outside a person's role is
403 and logged, and the broker refuses the data anyway.

Pages are rendered on the server (Jinja2), with one stylesheet and no script. Every form carries a
CSRF token; the session cookie is ``HttpOnly; Secure; SameSite=Strict`` and holds a random id only
(tokens stay on the server); every response carries a strict Content-Security-Policy. No document
number ever appears in a URL or a log line: the resident report is a POST.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import hashlib
import hmac
import io
import logging
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onceonly.consumers.client import (
    BrokerError,
    InvalidArgument,
    LegalBasis,
    Subject,
    Unauthenticated,
    Unavailable,
)
from onceonly.consumers.console import audit_pages, reports, resident_pages
from onceonly.consumers.console.base import ConsoleSettings, PageClient, Person
from onceonly.consumers.console.i18n import LANGUAGES, MESSAGES, pick_language, translate
from onceonly.consumers.console.reports import REPORT_ROLES
from onceonly.consumers.governance import AgreementTerms, GovernanceClient, GovernanceEntry
from onceonly.consumers.oversight import Fact, Trace, TraceQuery

__all__ = ["ConsoleClient", "ConsoleSettings", "create_app"]

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "onceonly_console"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
OPEN_DATA_MINIMUM = 10
OPEN_DATA_DIMENSIONS = ("CONSUMER", "PROCEDURE", "CERTIFICATE_TYPE", "LEGAL_BASIS_KIND", "OUTCOME")
OPEN_DATA_COLUMNS = ("organisation", "procedure", "certificate_type", "legal_basis_kind", "result")
PROPOSAL_FIELDS = (
    "agreement_id",
    "master",
    "procedures",
    "laws",
    "valid_from",
    "valid_until",
    "unit",
    "accountable",
    "dpo",
    "description",
)
PURPOSE_SAMPLE = 500
"""Traces read (newest first) for what the aggregates do not hold: purposes, denial details."""
RECENT_REQUESTS = 10
"""The consumer page lists this many newest requests, each with its proof."""
IDENTITY_TTL_S = 60.0
ADVICE_KEYS = frozenset(k for k in MESSAGES["en"] if k.startswith("advice_"))

PROVIDER_ROLES = ("provider-admin", "provider")
CONSUMER_ROLES = ("consumer-admin",)
OVERSIGHT_ROLES = ("oversight",)
PROOF_ROLES = ("consumer-admin", "oversight", "resident")
RESIDENT_ROLES = ("resident",)
NAV: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/provider", "provider_page", PROVIDER_ROLES),
    ("/consumer", "consumer_page", CONSUMER_ROLES),
    ("/oversight", "oversight_page", OVERSIGHT_ROLES),
    ("/oversight/resident", "resident_page", OVERSIGHT_ROLES),
    ("/oversight/ledger", "ledger_page", OVERSIGHT_ROLES),
    ("/oversight/audit", "audit_page", OVERSIGHT_ROLES),
    ("/consumer/audit", "audit_tasks_page", CONSUMER_ROLES),
    ("/reports", "report_page", REPORT_ROLES),
    ("/me", "my_log_page", RESIDENT_ROLES),
    ("/governance/log", "governance_log", ()),
)
"""Path, title key, roles (empty: every signed-in person)."""


class ConsoleClient(GovernanceClient, PageClient):
    """The console's own client of the broker (its ``OU=console`` certificate): Broker, Governance and
    Oversight over one channel. It acts only for a person, through :meth:`acting_for`."""


class _Identities:
    """The broker's answer to "who is this credential", kept for a minute; and the tokens people
    signed in with, by session id (never in the cookie)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[float, Person]] = {}
        self.tokens: dict[str, tuple[float, str]] = {}

    def get(self, key: str) -> Person | None:
        found = self._known.get(key)
        if found is None or found[0] < time.monotonic():
            self._known.pop(key, None)
            return None
        return found[1]

    def put(self, key: str, person: Person) -> None:
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[key] = (time.monotonic() + IDENTITY_TTL_S, person)


def client_certificate(scope: Scope) -> bytes | None:
    """The DER client certificate the person presented on this connection (see
    :mod:`onceonly.consumers.console.server`), or ``None``."""
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    if not chain:
        return None
    cert = x509.load_pem_x509_certificate(chain[0].encode() if isinstance(chain[0], str) else chain[0])
    return cert.public_bytes(serialization.Encoding.DER)


class SecurityHeaders:
    """Adds the Content-Security-Policy and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                    (b"strict-transport-security", b"max-age=31536000"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class Console:
    """The pages, over one :class:`ConsoleClient`."""

    def __init__(self, client: ConsoleClient, settings: ConsoleSettings) -> None:
        self.client = client
        self.settings = settings
        self.identities = _Identities()
        self._names: tuple[float, dict[str, str]] = (0.0, {})
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env = env

    # --- identity --------------------------------------------------------------------------

    async def person(self, request: Request) -> Person | None:
        der = client_certificate(request.scope)
        token: str | None = None
        if der is not None:
            key = "cert:" + hashlib.sha256(der).hexdigest()
            relay = self.client.acting_for(certificate_der=der)
        else:
            found = self.identities.tokens.get(request.session.get("sid", ""))
            if not found or found[0] < time.time():
                return None
            token = found[1]
            key = "token:" + hashlib.sha256(token.encode()).hexdigest()
            relay = self.client.acting_for(token=token)
        known = self.identities.get(key)
        if known is not None:
            return known
        org, role, via, officer, registered = await relay.who_am_i()
        name = registered.name if registered is not None else org
        person = Person(org, name, role, via, officer, certificate_der=der, token=token)
        self.identities.put(key, person)
        return person

    def relay(self, person: Person) -> ConsoleClient:
        if person.certificate_der is not None:
            return self.client.acting_for(certificate_der=person.certificate_der)
        return self.client.acting_for(token=person.token)

    # --- rendering -------------------------------------------------------------------------

    def language(self, request: Request) -> str:
        asked = request.query_params.get("lang")
        if asked in LANGUAGES:
            request.session["lang"] = asked
        return pick_language(request.session.get("lang"), request.headers.get("accept-language", ""))

    def render(
        self, request: Request, template: str, person: Person | None, status: int = 200, /, **context: Any
    ) -> HTMLResponse:
        lang = self.language(request)
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(24)

        def t(key: str, **values: object) -> str:
            return translate(lang, key, **values)

        nav = [
            (path, t(title))
            for path, title, roles in NAV
            if person is not None and (not roles or person.role in roles)
        ]
        html = self.env.get_template(template).render(
            t=t,
            lang=lang,
            languages=LANGUAGES,
            person=person,
            nav=nav,
            path=request.url.path,
            csrf=request.session["csrf"],
            advice_keys=ADVICE_KEYS,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    async def check_csrf(self, request: Request) -> FormData:
        form = await request.form()
        sent = str(form.get("csrf", ""))
        expected = str(request.session.get("csrf", ""))
        if not expected or not hmac.compare_digest(sent, expected):
            raise _Refused(403, "csrf")
        return form

    # --- routes ----------------------------------------------------------------------------

    def page(
        self, roles: Sequence[str], handler: Callable[[Request, Person], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A page for signed-in people of ``roles`` (empty: everyone signed in)."""

        async def endpoint(request: Request) -> Response:
            try:
                person = await self.person(request)
            except Unauthenticated:
                person = None
            except Unavailable:
                return self.render(request, "error.html", None, 503, message_key="broker_unavailable")
            if person is None:
                return RedirectResponse("/", status_code=303)
            if roles and person.role not in roles:
                log.warning(
                    "console page outside the role",
                    extra={
                        "event": "security",
                        "path": request.url.path,
                        "org": person.organization_id,
                        "role": person.role,
                    },
                )
                return self.render(request, "forbidden.html", person, 403)
            try:
                return await handler(request, person)
            except _Refused as refused:
                return self.render(request, "forbidden.html", person, refused.status)
            except Unavailable:
                return self.render(request, "error.html", person, 503, message_key="broker_unavailable")
            except BrokerError as exc:
                if exc.code == "PERMISSION_DENIED":
                    return self.render(request, "forbidden.html", person, 403)
                log.warning("console call refused", extra={"code": exc.code, "reason": exc.reason})
                return self.render(request, "error.html", person, 502, message=exc.message)

        return endpoint

    async def home(self, request: Request) -> Response:
        try:
            person = await self.person(request)
        except (Unauthenticated, Unavailable):
            person = None
        if person is None:
            return self.render(request, "signin.html", None, error="")
        if person.role in RESIDENT_ROLES:
            return RedirectResponse("/me", status_code=303)
        return self.render(request, "home.html", person)

    async def signin_token(self, request: Request) -> Response:
        form = await self.check_csrf(request)
        token = str(form.get("token", "")).strip()
        if not token or len(token) > 8192:
            return self.render(request, "signin.html", None, 400, error="token")
        try:
            org, role, via, _, _ = await self.client.acting_for(token=token).who_am_i()
        except (Unauthenticated, InvalidArgument) as exc:
            return self.render(request, "signin.html", None, 401, error=exc.message)
        sid = secrets.token_urlsafe(24)
        request.session.clear()
        request.session["sid"] = sid
        self.identities.tokens[sid] = (time.time() + 8 * 3600, token)
        log.info("console sign-in", extra={"org": org, "role": role, "via": via})
        return RedirectResponse("/", status_code=303)

    async def signout(self, request: Request) -> Response:
        await self.check_csrf(request)
        self.identities.tokens.pop(request.session.get("sid", ""), None)
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    # provider agency ----------------------------------------------------------------------

    async def provider_page(self, request: Request, person: Person) -> Response:
        since, until, period_error = _period(request)
        client = self.relay(person)
        names = await self.names()
        dims = ("CONSUMER", "PROCEDURE", "LEGAL_BASIS_KIND", "CERTIFICATE_TYPE", "OUTCOME")
        facts, hours, scanned = await client.query_usage(dims, bucket="DAY", since=since, until=until)
        by: dict[str, dict[str, int]] = {}
        for label, index in (("consumer", 0), ("procedure", 1), ("legal_basis", 2), ("certificate_type", 3)):
            counts: collections.Counter[str] = collections.Counter()
            for f in facts:
                key = f.dimensions[index]
                counts[names.get(key, key) if label == "consumer" else key] += f.checks
            by[label] = dict(counts.most_common())
        days = _by_day_facts(facts, 4)
        problems = _by_day_facts([f for f in facts if f.dimensions[4] in ("TIMEOUT", "ERROR")], 4)
        recent = [t async for t in client.traces(TraceQuery(since=since, until=until), limit=PURPOSE_SAMPLE)]
        by["purpose"] = _count(t.purpose_text for t in recent)
        usage = await client.usage("provider", since=since, until=until)
        mine = [r for r in usage.rows if r.key == person.organization_id]
        latency = (
            {"p50": mine[0].latency_p50_ms, "p90": mine[0].latency_p90_ms, "p99": mine[0].latency_p99_ms}
            if mine and mine[0].total
            else None
        )
        agreements = [a for a in await client.agreements() if person.organization_id in a.consulted]
        pending = [a for a in agreements if a.state == "PROPOSED" and person.organization_id in a.waiting_for]
        return self.render(
            request,
            "provider.html",
            person,
            **_period_texts(since, until),
            period_error=period_error,
            by=by,
            days=days,
            problems=problems,
            latency=latency,
            hours=hours,
            scanned=scanned,
            sampled=len(recent),
            agreements=agreements,
            pending=pending,
            names=names,
            notice=request.query_params.get("done", ""),
            act_error=request.session.pop("flash", ""),
        )

    async def act(self, request: Request, person: Person) -> Response:
        form = await self.check_csrf(request)
        agreement_id = str(form.get("agreement", ""))
        action = str(form.get("action", ""))
        version = int(str(form.get("version", "0")) or 0)
        if action not in ("APPROVE", "VETO"):
            raise _Refused(400, "action")
        reason = str(form.get("reason", "")).strip()
        try:
            await self.relay(person).act_on_agreement(agreement_id, action, reason=reason, version=version)
        except InvalidArgument as exc:
            request.session["flash"] = exc.message
            return RedirectResponse("/provider?done=error", status_code=303)
        return RedirectResponse("/provider?done=" + action.lower(), status_code=303)

    # consumer agency ----------------------------------------------------------------------

    async def consumer_page(self, request: Request, person: Person) -> Response:
        since, until, period_error = _period(request)
        client = self.relay(person)
        facts, hours, scanned = await client.query_usage(
            ("PROCEDURE", "OUTCOME", "DENIAL_REASON"), since=since, until=until
        )
        table, reasons = reports.requests_and_denials(facts)
        denied = TraceQuery(since=since, until=until, outcome="DENIED")
        recent = [t async for t in client.traces(denied, limit=PURPOSE_SAMPLE)]
        details: dict[str, str] = {}
        for t in recent:
            details.setdefault(t.denial_reason, _distinct(t.denial_detail))
        agreements = [a for a in await client.agreements() if a.organization_id == person.organization_id]
        latest, _ = await client.list_traces(TraceQuery(since=since, until=until), page_size=RECENT_REQUESTS)
        return self.render(
            request,
            "consumer.html",
            person,
            latest=latest,
            **_period_texts(since, until),
            period_error=period_error,
            table=table,
            denials=[(reason, n, details.get(reason, "")) for reason, n in reasons],
            agreements=agreements,
            hours=hours,
            scanned=scanned,
            names=await self.names(),
        )

    async def propose(self, request: Request, person: Person) -> Response:
        """Propose an agreement (a consumer's administrators): the broker validates the terms, names
        each bad field, and records the proposal for the providers (and governing body) to decide."""
        if request.method == "GET":
            return await self.proposal_form(request, person, {}, [])
        form = await self.check_csrf(request)
        values = {k: str(form.get(k, "")).strip() for k in PROPOSAL_FIELDS}
        values["certificate_types"] = ",".join(str(v) for v in form.getlist("certificate_types"))
        values["legal_bases"] = ",".join(str(v) for v in form.getlist("legal_bases"))
        errors: list[tuple[str, str]] = []
        try:
            valid_from = dt.datetime.fromisoformat(values["valid_from"]).replace(tzinfo=dt.UTC)
        except ValueError:
            errors.append(("valid_from", "must be a date YYYY-MM-DD"))
            valid_from = dt.datetime.now(dt.UTC)
        valid_until = None
        if values["valid_until"]:
            try:
                day = dt.date.fromisoformat(values["valid_until"]) + dt.timedelta(days=1)
                valid_until = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            except ValueError:
                errors.append(("valid_until", "must be a date YYYY-MM-DD"))
        if errors:
            return await self.proposal_form(request, person, values, errors, status=400)
        terms = AgreementTerms(
            organization_id=person.organization_id,
            unit=values["unit"],
            accountable=values["accountable"],
            procedure_codes=tuple(p.strip() for p in values["procedures"].split(",") if p.strip()),
            certificate_type_ids=tuple(c for c in values["certificate_types"].split(",") if c),
            legal_bases=tuple(b for b in values["legal_bases"].split(",") if b),
            laws=tuple(law.strip() for law in values["laws"].splitlines() if law.strip()),
            valid_from=valid_from,
            valid_until=valid_until,
            description=values["description"],
            master_agreement_id=values["master"],
            data_protection_officer=values["dpo"],
        )
        try:
            view, _ = await self.relay(person).propose_agreement(values["agreement_id"], terms)
        except (InvalidArgument, BrokerError) as exc:
            if exc.code not in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND"):
                raise
            found = [(f.removeprefix("terms."), d) for f, d in exc.field_violations]
            found += [(s_.removeprefix("terms."), d) for _, s_, d in exc.rule_violations]
            return await self.proposal_form(
                request, person, values, found or [("agreement_id", exc.message)], 400
            )
        request.session["flash"] = f"{view.agreement_id} v{view.version}: {view.state}, " + ", ".join(
            view.waiting_for
        )
        return RedirectResponse("/consumer/propose?done=1", status_code=303)

    async def proposal_form(
        self,
        request: Request,
        person: Person,
        values: Mapping[str, str],
        errors: list[tuple[str, str]],
        status: int = 200,
    ) -> Response:
        catalog = await self.relay(person).catalog()
        masters = await self.relay(person).masters()
        return self.render(
            request,
            "propose.html",
            person,
            status,
            values=values,
            errors=errors,
            types=[c.id for c in catalog.certificate_types],
            masters=sorted({m.id: m.title for m in masters}.items()),
            chosen_types=set(values.get("certificate_types", "").split(",")),
            chosen_bases=set(values.get("legal_bases", "").split(",")),
            done=request.session.pop("flash", "") if request.query_params.get("done") else "",
        )

    # oversight -----------------------------------------------------------------------------

    async def oversight_page(self, request: Request, person: Person) -> Response:
        q = request.query_params
        errors: list[tuple[str, str]] = []
        since, until, period_error = _period(request, default_days=None)
        if period_error:
            errors.append(("since", period_error))
        query = TraceQuery(
            since=since,
            until=until,
            consumer_organization_id=q.get("consumer", "").strip(),
            officer_id=q.get("officer", "").strip(),
            procedure_code=q.get("procedure", "").strip(),
            legal_basis_kind=q.get("legal_basis", "").strip().upper(),
            provider_id=q.get("provider", "").strip(),
            certificate_type_id=q.get("certificate_type", "").strip(),
            outcome=q.get("outcome", "").strip().upper(),
        )
        traces: list[Trace] = []
        next_token = ""
        if not errors:
            try:
                traces, next_token = await self.relay(person).list_traces(
                    query, page_size=50, page_token=q.get("page", "")
                )
            except InvalidArgument as exc:
                errors += [(f.split(".")[-1], d) for f, d in exc.field_violations] or [
                    ("filter", exc.message)
                ]
            except ValueError as exc:
                errors.append(("legal_basis", str(exc)))
        next_url = ""
        if next_token:
            params = dict(q)
            params["page"] = next_token
            next_url = "/oversight?" + "&".join(f"{k}={_quote(v)}" for k, v in params.items())
        return self.render(
            request,
            "oversight.html",
            person,
            400 if errors else 200,
            names=await self.names(),
            q=q,
            errors=errors,
            traces=traces,
            next_url=next_url,
        )

    async def resident_page(self, request: Request, person: Person) -> Response:
        if request.method == "GET":
            return self.render(request, "resident.html", person, report=None, errors=[], form={})
        form = await self.check_csrf(request)
        values = {
            k: str(form.get(k, "")).strip()
            for k in ("document_type", "document_number", "purpose", "case_file", "law")
        }
        errors: list[tuple[str, str]] = []
        for name in ("document_number", "purpose", "law"):
            if not values[name]:
                errors.append((name, "required"))
        report = None
        if not errors:
            try:
                report = await self.relay(person).resident_report(
                    Subject(values["document_type"] or "DNI", values["document_number"]),
                    purpose=values["purpose"],
                    legal_basis=LegalBasis.law(values["law"]),
                    case_file_id=values["case_file"],
                )
            except InvalidArgument as exc:
                errors = [(f.split(".")[-1], d) for f, d in exc.field_violations] or [
                    ("document_number", exc.message)
                ]
        safe_form = {k: v for k, v in values.items() if k != "document_number"}
        return self.render(
            request,
            "resident.html",
            person,
            400 if errors else 200,
            report=report,
            errors=errors,
            form=safe_form,
        )

    async def ledger_page(self, request: Request, person: Person) -> Response:
        heads = await self.relay(person).witnessed_heads()
        return self.render(request, "ledger.html", person, heads=heads)

    async def governance_log(self, request: Request, person: Person) -> Response:
        entries: list[GovernanceEntry] = []
        async for entry in self.relay(person).log():
            entries.append(entry)
        return self.render(request, "governance_log.html", person, entries=list(reversed(entries))[:500])

    async def names(self) -> dict[str, str]:
        """Organisation code → name (read from the broker at most once a minute: every page shows them)."""
        expires, names = self._names
        if expires < time.monotonic():
            names = {o.id: o.name for o in await self.client.organisations()}
            self._names = (time.monotonic() + IDENTITY_TTL_S, names)
        return names

    # open data (no sign-in) -------------------------------------------------------------------

    async def open_facts(
        self, request: Request
    ) -> tuple[list[Fact], dt.datetime | None, dt.datetime | None, str]:
        since, until, error = _period(request)
        if error:
            return [], since, until, error
        facts, _, _ = await self.client.query_usage(
            OPEN_DATA_DIMENSIONS, bucket="DAY", since=since, until=until, open_data=True
        )
        return facts, since, until, ""

    async def open_data(self, request: Request) -> Response:
        try:
            facts, since, until, error = await self.open_facts(request)
            impact, _, _ = await self.client.query_usage(
                ("CERTIFICATE_TYPE",), bucket="MONTH", outcome="VERIFIED", open_data=True
            )
        except Unavailable:
            return self.render(request, "error.html", None, 503, message_key="broker_unavailable")
        names = await self.names()
        months: dict[str, list[int]] = {}
        for f in impact:
            slot = months.setdefault(f.bucket, [0, 0])
            slot[0] += f.checks
            slot[1] += f.checks * self.settings.minutes_for(f.dimensions[0])
        indicators = [
            (month, checks, round(minutes / 60, 1)) for month, (checks, minutes) in sorted(months.items())
        ]
        tallest = max((c for _, c, _ in indicators), default=0)
        return self.render(
            request,
            "open_data.html",
            None,
            400 if error else 200,
            **_period_texts(since, until),
            period_error=error,
            rows=[(f, names.get(f.dimensions[0], f.dimensions[0])) for f in facts],
            indicators=indicators,
            bars=[
                (month, checks, (checks * 160 // tallest) if tallest else 0)
                for month, checks, _ in indicators
            ],
            minimum=OPEN_DATA_MINIMUM,
        )

    async def open_data_csv(self, request: Request) -> Response:
        facts, _, _, error = await self.open_facts(request)
        if error:
            return Response(f"since/until: {error}\n", status_code=400, media_type="text/plain")
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["day", *OPEN_DATA_COLUMNS, "checks", "requests", "suppressed"])
        for f in facts:
            counts = ("", "", "yes") if f.suppressed else (f.checks, f.requests, "no")
            writer.writerow([f.bucket, *f.dimensions, *counts])
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="onceonly-open-data.csv"'},
        )

    async def open_data_json(self, request: Request) -> Response:
        facts, since, until, error = await self.open_facts(request)
        if error:
            return JSONResponse({"error": {"field": "since", "description": error}}, status_code=400)
        return JSONResponse(
            {
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
                "minimum_count": OPEN_DATA_MINIMUM,
                "facts": [
                    {
                        "day": f.bucket,
                        **dict(zip(OPEN_DATA_COLUMNS, f.dimensions, strict=True)),
                        "checks": None if f.suppressed else f.checks,
                        "requests": None if f.suppressed else f.requests,
                        "suppressed": f.suppressed,
                    }
                    for f in facts
                ],
            }
        )

    # --- application -----------------------------------------------------------------------

    def app(self, settings: ConsoleSettings) -> Starlette:
        routes = [
            Route("/", self.home),
            Route("/signin/token", self.signin_token, methods=["POST"]),
            Route("/signout", self.signout, methods=["POST"]),
            Route("/provider", self.page(PROVIDER_ROLES, self.provider_page)),
            Route("/provider/act", self.page(("provider-admin",), self.act), methods=["POST"]),
            Route("/consumer", self.page(CONSUMER_ROLES, self.consumer_page)),
            Route("/consumer/propose", self.page(CONSUMER_ROLES, self.propose), methods=["GET", "POST"]),
            Route("/oversight", self.page(OVERSIGHT_ROLES, self.oversight_page)),
            Route(
                "/oversight/resident", self.page(OVERSIGHT_ROLES, self.resident_page), methods=["GET", "POST"]
            ),
            Route("/oversight/ledger", self.page(OVERSIGHT_ROLES, self.ledger_page)),
            Route("/governance/log", self.page((), self.governance_log)),
            Route(
                "/oversight/audit",
                self.page(OVERSIGHT_ROLES, partial(audit_pages.oversight_audit, self)),
                methods=["GET", "POST"],
            ),
            Route(
                "/consumer/audit",
                self.page(CONSUMER_ROLES, partial(audit_pages.consumer_audit, self)),
                methods=["GET", "POST"],
            ),
            Route("/proof/{trace_id}", self.page(PROOF_ROLES, partial(audit_pages.proof_page, self))),
            Route("/proof/{trace_id}/pdf", self.page(PROOF_ROLES, partial(audit_pages.proof_pdf, self))),
            Route("/verify", partial(audit_pages.verify_page, self)),
            Route("/reports", self.page(REPORT_ROLES, partial(reports.report_page, self))),
            Route("/me", self.page(RESIDENT_ROLES, partial(resident_pages.my_log, self))),
            Route("/me.csv", self.page(RESIDENT_ROLES, partial(resident_pages.my_log_csv, self))),
            Route("/me.pdf", self.page(RESIDENT_ROLES, partial(resident_pages.my_log_pdf, self))),
            Route("/reports.csv", self.page(REPORT_ROLES, partial(reports.report_csv, self))),
            Route("/open-data", self.open_data),
            Route("/open-data.csv", self.open_data_csv),
            Route("/open-data.json", self.open_data_json),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        middleware = [
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=settings.session_secret,
                session_cookie=SESSION_COOKIE,
                same_site="strict",
                https_only=True,
                max_age=8 * 3600,
            ),
        ]
        return Starlette(routes=routes, middleware=middleware, exception_handlers={404: self.not_found})

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.render(request, "error.html", None, 404, message_key="not_found")


class _Refused(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def create_app(client: ConsoleClient, settings: ConsoleSettings | None = None) -> Starlette:
    """The console's ASGI application over ``client`` (the console's own certificate)."""
    settings = settings or ConsoleSettings()
    return Console(client, settings).app(settings)


# --- helpers --------------------------------------------------------------------------------------


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _period(
    request: Request, default_days: int | None = 30
) -> tuple[dt.datetime | None, dt.datetime | None, str]:
    """(since, until exclusive) from the ``since``/``until`` dates of the query; a bad date is an error
    naming the field."""
    q = request.query_params
    today = dt.datetime.now(dt.UTC).date()
    since = until = None
    try:
        if q.get("since"):
            d = dt.date.fromisoformat(q["since"])
            since = dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
        elif default_days is not None:
            d = today - dt.timedelta(days=default_days)
            since = dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
        if q.get("until"):
            d = dt.date.fromisoformat(q["until"]) + dt.timedelta(days=1)
            until = dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
    except ValueError:
        return None, None, "dates are YYYY-MM-DD"
    if since is not None and until is not None and until <= since:
        return None, None, "until is before since"
    return since, until, ""


def _period_texts(since: dt.datetime | None, until: dt.datetime | None) -> dict[str, str]:
    """The dates a period form shows (``until`` inclusive, as people read it)."""
    return {
        "since_text": since.date().isoformat() if since else "",
        "until_text": (until - dt.timedelta(days=1)).date().isoformat() if until else "",
    }


def _distinct(detail: str) -> str:
    """A denial's detail with each broken rule once (a rule broken by several checks repeats)."""
    return " ".join(
        dict.fromkeys(part.strip().rstrip(".") + "." for part in detail.split(";") if part.strip())
    )


def _count(values: Iterable[str]) -> dict[str, int]:
    return dict(collections.Counter(v or "-" for v in values).most_common())


def _by_day_facts(facts: Iterable[Fact], outcome_index: int) -> list[tuple[str, dict[str, int]]]:
    """Checks by day (newest first) and outcome."""
    days: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for f in facts:
        days[f.bucket][f.dimensions[outcome_index]] += f.checks
    return [(d, dict(c)) for d, c in sorted(days.items(), reverse=True)]


def _percentiles(values: list[int]) -> dict[str, int] | None:
    if not values:
        return None
    if len(values) == 1:
        return {"p50": values[0], "p90": values[0], "p99": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49]), "p90": round(cuts[89]), "p99": round(cuts[98])}
