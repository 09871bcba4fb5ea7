"""The monthly report of an agency, as a page and as CSV (a mixin of ``Console``).

One month of one organisation, read from the broker's usage aggregates (``QueryUsage``): as a
consumer, its requests by procedure and decision, its denials by reason, the certificates residents
did not have to bring and the hours that saved them, and its requests by day; as a provider, the
checks it served by consumer, certificate type and outcome. An agency's staff get their own
organisation's report (the broker scopes the figures to it whatever is asked); an oversight body
picks the organisation.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from onceonly.consumers.console.base import Pages, Person
from onceonly.consumers.oversight import Fact

ORGANISATION_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")
REPORT_ROLES = ("consumer-admin", "provider-admin", "provider", "oversight")
CONSUMER_SIDE = ("consumer-admin", "oversight")
PROVIDER_SIDE = ("provider-admin", "provider", "oversight")


@dataclass
class MonthlyReport:
    organization_id: str
    month: str
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    """Procedure → GRANTED / DENIED → requests."""
    denials: list[tuple[str, int]] = field(default_factory=list)
    verified: list[tuple[str, int, float]] = field(default_factory=list)
    """Certificate type, certificates not brought, hours saved."""
    days: list[tuple[str, int, int]] = field(default_factory=list)
    """Day, requests, bar height (px)."""
    served: list[tuple[str, str, str, int]] = field(default_factory=list)
    """Consumer, certificate type, outcome, checks (as a provider)."""

    @property
    def total_requests(self) -> int:
        return sum(sum(c.values()) for c in self.requests.values())

    @property
    def not_brought(self) -> int:
        return sum(n for _, n, _ in self.verified)

    @property
    def hours_saved(self) -> float:
        return round(sum(h for _, _, h in self.verified), 1)

    def csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["organisation", "month", "section", "key", "detail", "value"])
        row = (self.organization_id, self.month)
        for procedure, counts in self.requests.items():
            for decision, n in sorted(counts.items()):
                w.writerow([*row, "requests_by_procedure", procedure, decision, n])
        for reason, n in self.denials:
            w.writerow([*row, "denials_by_reason", reason, "", n])
        for certificate_type, n, hours in self.verified:
            w.writerow([*row, "certificates_not_brought", certificate_type, "", n])
            w.writerow([*row, "hours_saved", certificate_type, "", hours])
        for day, n, _ in self.days:
            w.writerow([*row, "requests_by_day", day, "", n])
        for consumer, certificate_type, outcome, n in self.served:
            w.writerow([*row, "checks_served", f"{consumer} {certificate_type}", outcome, n])
        return out.getvalue()


def requests_and_denials(facts: Iterable[Fact]) -> tuple[dict[str, dict[str, int]], list[tuple[str, int]]]:
    """Requests by procedure and decision, and denials by reason, from facts grouped by procedure,
    outcome and denial reason."""
    table: dict[str, dict[str, int]] = collections.defaultdict(lambda: {"GRANTED": 0, "DENIED": 0})
    reasons: collections.Counter[str] = collections.Counter()
    for f in facts:
        procedure, outcome, reason = f.dimensions
        decision = "DENIED" if outcome == "DENIED" else "GRANTED"
        table[procedure][decision] += f.requests
        if decision == "DENIED":
            reasons[reason] += f.requests
    return dict(sorted(table.items())), reasons.most_common()


def _month(text: str) -> tuple[dt.datetime, dt.datetime] | None:
    """First instant of the month ``YYYY-MM`` and of the next one; ``None`` if it is not a month."""
    try:
        start = dt.datetime.strptime(text, "%Y-%m").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    after = (start + dt.timedelta(days=32)).replace(day=1)
    return start, after


async def _report(console: Pages, request: Request, person: Person) -> tuple[MonthlyReport | None, str]:
    q = request.query_params
    month = q.get("month", "") or dt.datetime.now(dt.UTC).strftime("%Y-%m")
    span = _month(month)
    if span is None:
        return None, "month"
    org = q.get("org", "").strip() if person.role == "oversight" else person.organization_id
    if not org:
        return None, ""
    if not ORGANISATION_CODE.fullmatch(org):
        return None, "org"
    since, until = span
    client = console.relay(person)
    report = MonthlyReport(org, month)
    if person.role in CONSUMER_SIDE:
        facts, _, _ = await client.query_usage(
            ("PROCEDURE", "OUTCOME", "DENIAL_REASON"),
            since=since,
            until=until,
            consumer_organization_id=org,
        )
        report.requests, report.denials = requests_and_denials(facts)
        verified, _, _ = await client.query_usage(
            ("CERTIFICATE_TYPE",),
            since=since,
            until=until,
            consumer_organization_id=org,
            outcome="VERIFIED",
        )
        report.verified = sorted(
            (
                f.dimensions[0],
                f.checks,
                round(f.checks * console.settings.minutes_for(f.dimensions[0]) / 60, 1),
            )
            for f in verified
        )
        daily, _, _ = await client.query_usage(
            ("OUTCOME",), bucket="DAY", since=since, until=until, consumer_organization_id=org
        )
        per_day: collections.Counter[str] = collections.Counter()
        for f in daily:
            per_day[f.bucket] += f.requests
        tallest = max(per_day.values(), default=0)
        report.days = [(d, n, n * 120 // tallest if tallest else 0) for d, n in sorted(per_day.items())]
    if person.role in PROVIDER_SIDE:
        served, _, _ = await client.query_usage(
            ("CONSUMER", "CERTIFICATE_TYPE", "OUTCOME"), since=since, until=until, provider_id=org
        )
        report.served = sorted((f.dimensions[0], f.dimensions[1], f.dimensions[2], f.checks) for f in served)
    return report, ""


async def report_page(console: Pages, request: Request, person: Person) -> Response:
    report, error = await _report(console, request, person)
    names = await console.names()
    return console.render(
        request,
        "report.html",
        person,
        400 if error else 200,
        report=report,
        error=error,
        month=request.query_params.get("month", "") or dt.datetime.now(dt.UTC).strftime("%Y-%m"),
        org=report.organization_id if report else request.query_params.get("org", ""),
        names=names,
        consumer_side=person.role in CONSUMER_SIDE,
        provider_side=person.role in PROVIDER_SIDE,
    )


async def report_csv(console: Pages, request: Request, person: Person) -> Response:
    report, error = await _report(console, request, person)
    if report is None:
        problem = {"month": "month: must be YYYY-MM", "org": "org: not an organisation code"}.get(
            error, "org: choose an organisation"
        )
        return Response(problem + "\n", status_code=400, media_type="text/plain")
    name = f"onceonly-report-{report.organization_id}-{report.month}.csv"
    return Response(
        report.csv(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )
