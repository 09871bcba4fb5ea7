"""``make demo``: the whole platform on loopback and a housing-office scenario.

Creates a throwaway CA and certificates under ``var/demo/pki`` (``onceonly pki init``) and a
throwaway identity provider for the housing office under ``var/demo/idp``, starts three
reference providers and the broker as separate processes (``onceonly serve``, mutual TLS
everywhere) with an embedded SQLite database under ``var/demo``, assesses rent-subsidy
applications for a few residents as the housing office (client certificate), runs one
verification with an officer's bearer token instead, shows a spoofed consumer being refused,
verifies every attestation offline against the broker's JWKS, and stops everything with
SIGTERM. Exits 0 only if every step did what it should.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from onceonly.consumers._console import table
from onceonly.consumers.caseworker import INCOME_THRESHOLD_EUR, Assessment, Eligibility, HousingOffice, assess
from onceonly.consumers.client import (
    BrokerClient,
    Check,
    Consumer,
    Denied,
    LegalBasis,
    Purpose,
    Subject,
    verify_attestation,
)
from onceonly.consumers.console.probe import heading, open_page, open_page_with_token, wait_for_console
from onceonly.consumers.governance import AgreementTerms, AgreementView, GovernanceClient, GovernanceEntry
from onceonly.consumers.oversight import OFFICER_LABELS, OversightClient
from onceonly.consumers.resident import ResidentClient
from onceonly.pki import (
    DEMO_CONSUMER,
    DEMO_CONSUMER_ADMIN,
    DEMO_OPERATOR,
    DEMO_OVERSIGHT,
    ClientTls,
    cert_path,
    export_pkcs12,
    init_pki,
    key_path,
)
from onceonly.processes import Process, free_port, onceonly_argv, spawn, stop_all, wait_serving
from onceonly.providers.synthetic import LATEST_FISCAL_YEAR, Resident, find, population

PROVIDERS = ("registry", "tax", "employment")
IDP_ISSUER = "https://idp.housing.l01280796.demo"
EID_ISSUER = "https://eid.demo"
"""The demo's throwaway eID provider: its tokens name residents by their identity document."""
BROKER_AUDIENCE = "onceonly-broker"
JWT_OFFICER = "officer-0042"


def _known(r: Resident) -> bool:
    return r.known_to_registry and r.known_to_tax and r.known_to_employment and r.municipality_code == "28079"


def personas() -> list[tuple[str, Resident, Eligibility, str]]:
    """Residents from the synthetic data set chosen for the story, with the expected decision."""
    eligible = find(
        lambda r: (
            _known(r)
            and r.tax_compliant
            and r.registered_unemployed
            and r.income(LATEST_FISCAL_YEAR) < INCOME_THRESHOLD_EUR
        )
    )
    not_eligible = find(
        lambda r: (
            _known(r)
            and r.tax_compliant
            and r.registered_unemployed
            and r.income(LATEST_FISCAL_YEAR) >= INCOME_THRESHOLD_EUR
        )
    )
    other = find(lambda r: _known(r) and r not in (eligible, not_eligible))
    return [
        ("applicant A", eligible, Eligibility.ELIGIBLE, "HOUSING-RENT-SUBSIDY"),
        ("applicant B", not_eligible, Eligibility.NOT_ELIGIBLE, "HOUSING-RENT-SUBSIDY"),
        # The office has no agreement for parking permits: policy refuses before any provider is asked.
        ("applicant C", other, Eligibility.DENIED, "PARKING-PERMIT"),
    ]


def print_assessment(label: str, a: Assessment) -> None:
    print(f"\n{label} ({a.subject.document_type} ***{a.subject.document_number[-4:]}): {a.eligibility.value}")
    if a.denial is not None:
        print(f"  denied by policy: {a.denial.reason}: {a.denial.message}")
        print(f"  trace {a.denial.trace_id}")
        return
    assert a.verification is not None
    rows = [
        (r.rule.description, r.status, {True: "yes", False: "no", None: "?"}[r.satisfied], _latency(a, r))
        for r in a.results
    ]
    print(table(["condition", "check", "holds", "ms"], rows))
    print(f"  trace {a.verification.trace_id}")


def _latency(a: Assessment, r: object) -> int:
    assert a.verification is not None
    return a.verification.outcome(r.rule.certificate_type_id).latency_ms  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DemoIdp:
    """A throwaway identity provider of the housing office: its signing key and the broker's issuers file."""

    key: ec.EllipticCurvePrivateKey
    issuers_toml: Path

    def mint(self, officer_id: str, organization_id: str, ttl_s: int = 300, role: str = "consumer") -> str:
        now = int(time.time())
        claims = {
            "iss": IDP_ISSUER,
            "aud": BROKER_AUDIENCE,
            "sub": officer_id,
            "org": organization_id,
            "role": role,
            "iat": now,
            "exp": now + ttl_s,
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "demo-idp-1"})

    def mint_resident(self, resident: Resident, *represents: Resident, ttl_s: int = 300) -> str:
        """An eID token (the shape of an OpenID Connect ID token) for ``resident``."""
        now = int(time.time())
        claims = {
            "iss": EID_ISSUER,
            "aud": BROKER_AUDIENCE,
            "sub": f"eid-{now}",
            "document": f"{resident.document_type}:{resident.document_number}",
            "represents": [f"{r.document_type}:{r.document_number}" for r in represents],
            "iat": now,
            "exp": now + ttl_s,
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "demo-eid-1"})


def make_idp(directory: Path) -> DemoIdp:
    """Generate the IdP key pair (kept between runs) and write the broker's issuers TOML."""
    directory.mkdir(parents=True, exist_ok=True)
    key_file, public_file = directory / "idp-key.pem", directory / "idp.pem"
    if key_file.exists():
        loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        key = loaded
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
    public_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    issuers = directory / "issuers.toml"
    issuers.write_text(
        "# Identity providers whose bearer tokens the demo broker accepts.\n"
        "[[issuer]]\n"
        f'issuer = "{IDP_ISSUER}"\n'
        f'audience = "{BROKER_AUDIENCE}"\n'
        'public_keys = ["idp.pem"]\n'
        f'organizations = ["{DEMO_CONSUMER[0]}"]\n'
        'roles = ["consumer", "consumer-admin"]\n'
        "\n# The throwaway eID provider of residents (same demo key).\n"
        "[[issuer]]\n"
        f'issuer = "{EID_ISSUER}"\n'
        f'audience = "{BROKER_AUDIENCE}"\n'
        'public_keys = ["idp.pem"]\n'
        "residents = true\n"
    )
    return DemoIdp(key, issuers)


async def asynchronous_review(client: BrokerClient) -> list[str]:
    """The yearly re-check of every tenant, submitted as one asynchronous job and collected later."""
    people = [
        (f"review-2026-{i}", Subject(r.document_type, r.document_number))
        for i, (_, r, _, _) in enumerate(personas(), 1)
    ]
    started = time.monotonic()
    job = await client.submit_verification(
        consumer=Consumer(DEMO_CONSUMER[0], "Housing subsidies", "officer-0042"),
        purpose=Purpose("HOUSING-RENT-SUBSIDY", "Yearly re-check of tenants", "REVIEW-2026"),
        legal_basis=LegalBasis.law("Ley 12/2023 art. 17"),
        checks=[Check("tax.compliance/v1")],
        subjects=people,
        submission_id=f"review-2026-{uuid.uuid4().hex[:8]}",
    )
    print(
        f"\nasynchronous: the yearly re-check of {job.subjects} tenants submitted as job {job.job_id} "
        f"({job.state})"
    )
    for _ in range(200):  # at most 20 s
        job = await client.verification_result(job.job_id)
        if job.done:
            break
        await asyncio.sleep(0.1)
    if not job.done:
        return [
            f"asynchronous job {job.job_id} not done after 20 s ({job.state}, {job.decided}/{job.subjects})"
        ]
    verified = sum(
        1 for item in job.results if item.verification is not None and item.verification.outcomes[0].verified
    )
    print(
        f"  collected {(time.monotonic() - started) * 1000:.0f} ms later: {job.state}, "
        f"{verified} of {job.subjects} tax-compliance checks verified, each subject traced once"
    )
    return (
        []
        if len(job.results) == len(people)
        else [f"asynchronous job: {len(job.results)} results for {len(people)}"]
    )


async def scsp_request(url: str, pki_dir: Path, resident: Resident) -> list[str]:
    """The same office as an SCSP v3 application: one signed synchronous petition to the facade."""
    from onceonly.consumers import scsp
    from onceonly.scsp import wssecurity
    from onceonly.scsp.soap import DATOS_NS, RESPUESTA_NS, SoapError, text_of

    seal_name = f"{DEMO_CONSUMER[1]}-seal"
    seal = wssecurity.Seal.from_pem(
        cert_path(pki_dir, seal_name).read_bytes(), key_path(pki_dir, seal_name).read_bytes()
    )
    code = "ONCEONLY_CORRIENTE_AEAT"
    message = scsp.peticion(
        f"DEMO{uuid.uuid4().hex[:12].upper()}", code, [(resident.document_type, resident.document_number)]
    )
    body = scsp.signed_envelope(message, seal)
    context = scsp.client_context(pki_dir, DEMO_CONSUMER[1])
    for attempt in range(50):  # bounded: the facade listens a moment after the gRPC port
        try:
            status, data = await asyncio.to_thread(scsp.post, url, body, "peticionSincrona", context)
            break
        except ConnectionRefusedError:
            if attempt == 49:
                return [f"SCSP facade at {url} refused every connection"]
            await asyncio.sleep(0.1)
    try:
        answer = scsp.read_answer(data, pki_dir)
    except SoapError as exc:
        return [f"SCSP answer (HTTP {status}) does not hold: {exc}"]
    if answer.fault or answer.code != "0003":
        return [f"SCSP petition answered {answer.code}: {answer.text}"]
    sent = answer.message.find(f"{{{RESPUESTA_NS}}}Transmisiones/{{{RESPUESTA_NS}}}TransmisionDatos")
    assert sent is not None
    claims = {
        a.findtext(f"{{{DATOS_NS}}}Nombre"): a.findtext(f"{{{DATOS_NS}}}Valor")
        for a in sent.iter(f"{{{DATOS_NS}}}Afirmacion")
    }
    transmission = text_of(sent, RESPUESTA_NS, "DatosGenericos/Transmision/IdTransmision")
    print(
        f"\nSCSP v3: the same office's SCSP application sends a signed peticionSincrona ({code}) to "
        f"{url}\n  → {answer.code} {answer.text}, {claims}, IdTransmision {transmission}, "
        f"signed by {answer.signer}"
    )
    return []


async def scenario(
    broker_target: str, pki_dir: Path, idp: DemoIdp | None = None, token_target: str | None = None
) -> list[str]:
    """Play the housing office's day; return what went other than expected."""
    problems: list[str] = []
    office = HousingOffice()
    org, name = DEMO_CONSUMER
    tls = ClientTls.from_dir(pki_dir, name)
    identity = tls.identity()
    assert identity is not None
    print(
        f"caller: {identity.name} of {identity.organization_id} ({identity.role}), "
        "authenticated by mutual TLS with a client certificate from the platform CA"
    )
    async with BrokerClient(broker_target, tls=tls) as client:
        catalog = await client.catalog()
        types, providers = len(catalog.certificate_types), len(catalog.providers)
        print(f"catalog: {types} certificate types from {providers} providers")
        assessments = []
        for i, (label, resident, expected, procedure) in enumerate(personas(), start=1):
            subject = Subject(resident.document_type, resident.document_number)
            a = await assess(
                client,
                office,
                subject,
                officer_id="officer-0042",
                case_file_id=f"EXP-2026-{i:04d}",
                procedure=procedure,
            )
            print_assessment(label, a)
            assessments.append(a)
            if a.eligibility is not expected:
                problems.append(f"{label}: expected {expected.value}, got {a.eligibility.value}")
        problems += await spoofing_is_refused(client, personas()[0][1])
        problems += await asynchronous_review(client)
        jwks = await client.jwks()
    if idp is not None and token_target is not None:
        label, resident, expected, procedure = personas()[0]
        print(
            f"\n{label} again, by {JWT_OFFICER} of {org} with a bearer token from the office's "
            f"identity provider ({IDP_ISSUER}), over TLS without a client certificate:"
        )
        token = idp.mint(JWT_OFFICER, org)
        async with BrokerClient(token_target, tls=ClientTls(pki_dir / "ca.pem"), token=token) as by_token:
            a = await assess(
                by_token,
                office,
                Subject(resident.document_type, resident.document_number),
                officer_id=JWT_OFFICER,
                case_file_id="EXP-2026-0099",
                procedure=procedure,
            )
            print_assessment(f"{label} (JWT)", a)
            assessments.append(a)
            if a.eligibility is not expected:
                problems.append(f"{label} (JWT): expected {expected.value}, got {a.eligibility.value}")
    tokens = [r.attestation for a in assessments for r in a.results if r.attestation]
    verified = 0
    for token in tokens:
        try:
            verify_attestation(token, jwks, audience=office.organization_id)
            verified += 1
        except Exception as exc:  # report, do not stop: the summary says what failed
            problems.append(f"attestation failed verification: {exc}")
    print(f"\nattestations verified offline against the broker's JWKS: {verified}/{len(tokens)}")
    if not tokens:
        problems.append("no attestation was issued")
    return problems


async def resident_report(broker_target: str, pki_dir: Path, resident: Resident) -> list[str]:
    """An oversight body looks at who consulted applicant A's data (and is traced doing so)."""
    subject = Subject(resident.document_type, resident.document_number)
    print(f"\nresident's access report for applicant A, asked by the oversight body ({DEMO_OVERSIGHT[0]}):")
    async with OversightClient(
        broker_target, tls=ClientTls.from_dir(pki_dir, DEMO_OVERSIGHT[1])
    ) as oversight:
        report = await oversight.resident_report(
            subject,
            purpose="Resident's request to see who consulted their data",
            legal_basis=LegalBasis.law("Reglamento (UE) 2016/679 art. 15"),
        )
    rows = [
        (
            a.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            a.consumer_organization_name or a.consumer_organization_id,
            a.procedure_code,
            a.purpose_text,
            f"{a.legal_basis_kind} {a.legal_basis_reference}",
            ", ".join(a.certificate_type_ids),
            OFFICER_LABELS.get(a.officer_identification, "-"),
            a.decision,
        )
        for a in report.accesses
    ]
    headers = ["when (UTC)", "who", "procedure", "purpose", "legal basis", "certificate types", "officer"]
    print(table([*headers, "decision"], rows))
    print(f"  this lookup is itself traced: {report.report_trace_id}")
    consulted = [a for a in report.accesses if a.procedure_code == "HOUSING-RENT-SUBSIDY"]
    # The application, assessed twice (certificate, then token), the asynchronous yearly re-check and
    # the SCSP petition.
    if len(consulted) != 4:
        return [f"resident report lists {len(consulted)} housing-office accesses, expected 4"]
    # Three by the office's applications (their certificates assert the officer), one by an officer
    # authenticated by the office's identity provider.
    if sorted(a.officer_identification for a in consulted) != ["CERTIFICATE"] * 3 + ["TOKEN"]:
        return ["resident report does not tell the asserted officer from the authenticated one"]
    return []


async def import_governance(broker_target: str, pki_dir: Path, path: Path) -> list[str]:
    """The platform operator records the demo's organisations, agreements and vetoes from a file,
    as governance changes: ``onceonly governance import FILE``."""
    async with GovernanceClient(broker_target, tls=ClientTls.from_dir(pki_dir, DEMO_OPERATOR[1])) as gov:
        changes, entries = await gov.import_file(path.read_text("utf-8"), path.name)
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.what] = counts.get(c.what, 0) + 1
    print(
        f"governance imported by the operator ({DEMO_OPERATOR[0]}) from {path.name}: "
        + ", ".join(f"{n} {what}(s)" for what, n in counts.items())
        + f" recorded as governance log entries 1..{len(entries)}"
    )
    return [] if entries else ["the governance import recorded nothing"]


PARKING = "PARKING-PERMIT"
PARKING_AGREEMENT = "madrid-parking-permit"


def _logged(entry: GovernanceEntry, view: AgreementView) -> tuple[object, ...]:
    return entry.seq, f"{entry.actor_organization_id} ({entry.actor_role})", entry.action, view.state


async def governance(broker_target: str, pki_dir: Path, resident: Resident) -> list[str]:
    """An agreement made through the platform: the housing office's administrators propose it, the
    two providers concerned approve it and the governing body its master agreement names (the
    operator) endorses it, it is in force on the next request; then the tax agency vetoes it, and the
    next request is refused naming the veto."""
    print("\ngovernance: the housing office proposes an agreement for residents' parking permits")
    admin = DEMO_CONSUMER_ADMIN[1]
    terms = AgreementTerms(
        organization_id=DEMO_CONSUMER[0],
        unit="Mobility — parking permits",
        accountable="Head of the Mobility Service",
        procedure_codes=(PARKING,),
        certificate_type_ids=("registry.residence/v1", "tax.compliance/v1"),
        legal_bases=("LAW",),
        laws=("Ley 39/2015 art. 28",),
        valid_from=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        description="Residents' parking permits: registered in the municipality and up to date with taxes",
        master_agreement_id="municipal-benefits",
        data_protection_officer="Data Protection Officer, Madrid City Council",
    )
    rows: list[tuple[object, ...]] = []

    async def as_(name: str) -> GovernanceClient:
        return GovernanceClient(broker_target, tls=ClientTls.from_dir(pki_dir, name))

    async with await as_(admin) as gov:
        view, entry = await gov.propose_agreement(PARKING_AGREEMENT, terms)
        rows.append(_logged(entry, view))
    for party in view.waiting_for:
        # The providers concerned approve; the governing body (the operator) endorses.
        endorses = party == DEMO_OPERATOR[0]
        async with await as_(DEMO_OPERATOR[1] if endorses else f"{party}-admin") as gov:
            view, entry = await gov.act_on_agreement(PARKING_AGREEMENT, "ENDORSE" if endorses else "APPROVE")
            rows.append(_logged(entry, view))
    problems = [] if view.state == "IN_FORCE" else [f"the approved agreement is {view.state}, not IN_FORCE"]

    async def parking_request() -> str:
        async with BrokerClient(broker_target, tls=ClientTls.from_dir(pki_dir, DEMO_CONSUMER[1])) as client:
            try:
                await client.verify(
                    consumer=Consumer(DEMO_CONSUMER[0], "Mobility — parking permits", "officer-0042"),
                    purpose=Purpose(PARKING, "Residents' parking permit", "EXP-2026-PK-0007"),
                    legal_basis=LegalBasis.law("Ley 39/2015 art. 28"),
                    subject=Subject(resident.document_type, resident.document_number),
                    checks=[
                        Check("registry.residence/v1", {"municipality_code": "28079"}),
                        Check("tax.compliance/v1"),
                    ],
                )
            except Denied as denied:
                return f"DENIED {denied.reason}: {denied.message}"
        return "GRANTED"

    granted = await parking_request()
    async with await as_("tax-admin") as gov:
        view, entry = await gov.act_on_agreement(
            PARKING_AGREEMENT, "VETO", reason="tax data is not proportionate for parking permits"
        )
        rows.append(_logged(entry, view))
    refused = await parking_request()
    print(table(["log", "by", "action", "state after"], rows))
    print(f"  a parking-permit request once in force: {granted}")
    print(f"  the next request after the tax agency's veto: {refused}")
    if granted != "GRANTED":
        problems.append(f"the agreement in force did not allow the request: {granted}")
    if not refused.startswith("DENIED PROVIDER_VETO"):
        problems.append(f"the veto did not take effect on the next request: {refused}")
    return problems


def verify_ledger_after(var_dir: Path, env: dict[str, str]) -> list[str]:
    """``onceonly ledger verify`` on the demo's database, as an auditor would run it."""
    print("\nonceonly ledger verify:")
    done = subprocess.run(
        onceonly_argv("ledger", "verify", "--var-dir", str(var_dir)),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    print("\n".join(f"  {line}" for line in done.stdout.splitlines()))
    return [] if done.returncode == 0 else [f"ledger verify exited {done.returncode}: {done.stderr.strip()}"]


async def spoofing_is_refused(client: BrokerClient, resident: Resident) -> list[str]:
    """The housing office's certificate asking as another city council is refused, untraced."""
    print("\nthe housing office's certificate asking as another organisation (L08019030):")
    try:
        await client.verify(
            consumer=Consumer("L08019030", "Housing", "officer-0042"),
            purpose=Purpose("HOUSING-RENT-SUBSIDY", "Rent subsidy application", "EXP-2026-0666"),
            legal_basis=LegalBasis.law("Ley 12/2023 art. 17"),
            subject=Subject(resident.document_type, resident.document_number),
            checks=[Check("tax.compliance/v1")],
        )
    except Denied as denied:
        print(f"  refused: {denied.code} {denied.reason}")
        if denied.reason != "CONSUMER_MISMATCH":
            return [f"spoofed consumer refused with {denied.reason}, expected CONSUMER_MISMATCH"]
        return []
    return ["a spoofed consumer was answered"]


CONSOLE_PEOPLE = ("oversight", "tax-admin", "housing-admin")
"""Whose certificates the demo exports for a browser (PKCS#12, password ``demo``)."""


async def console_tour(url: str, pki_dir: Path) -> list[str]:
    """Open the console as the oversight body, a provider and the housing office, as a browser would."""
    await wait_for_console(url + "/", ClientTls(pki_dir / "ca.pem"))
    print(f"\nconsole on {url} (HTTPS; sign in with a client certificate, or a token):")
    problems: list[str] = []
    rows = []
    tour = (
        ("oversight", "/oversight", "Madrid — Housing Office", "the traces of every request"),
        ("tax-admin", "/provider", "HOUSING-RENT-SUBSIDY", "who used the tax agency's data, and why"),
        ("housing-admin", "/consumer", "PROVIDER_VETO", "its requests, and its denials with what to do"),
    )
    pages: dict[str, str] = {}

    async def visit(name: str | None, path: str, expected: str, shows: str) -> str:
        tls = ClientTls.from_dir(pki_dir, name) if name else ClientTls(pki_dir / "ca.pem")
        who = "-"
        if name:
            _, home = await open_page(url + "/", tls)  # signs in (the broker says who this is)
            who = heading(home)
        started = time.perf_counter()
        status, page = await open_page(url + path, tls)
        ms = round((time.perf_counter() - started) * 1000)
        rows.append((f"{name}.pem" if name else "(none)", who, path, status, ms, shows))
        if status != 200 or expected not in page:
            problems.append(
                f"the console's {path} for {name or 'anyone'} answered {status} without {expected!r}"
            )
        return page

    for name, path, expected, shows in tour:
        pages[path] = await visit(name, path, expected, shows)
    proof = re.search(r'href="(/proof/[0-9a-f]+)"', pages["/consumer"])
    if proof is None:
        problems.append("the console's /consumer lists no request with its proof")
    else:
        page = await visit(
            "housing-admin", proof.group(1), "Verification code", "the proof of its newest request"
        )
        code = re.search(r'id="code">([A-Z2-7-]{19})<', page)
        if code is None:
            problems.append(f"the console's {proof.group(1)} shows no verification code")
        else:
            await visit(
                None, f"/verify?code={code.group(1)}", "unaltered", "the proof's code checked, by anyone"
            )
    await visit("housing-admin", "/reports", "HOUSING-RENT-SUBSIDY", "its monthly report (and CSV)")
    await visit("oversight", "/oversight/audit", "Draw a sample", "audit sampling of any consumer")
    await visit(None, "/open-data", "Open data", "usage and impact, for anyone")
    print(table(["certificate", "signed in as", "page", "status", "ms", "shows"], rows))
    return problems


async def residents_view(
    console_url: str, token_target: str, pki_dir: Path, idp: DemoIdp, resident: Resident
) -> list[str]:
    """Applicant A signs in with the eID token and sees who consulted their data (the view traced)."""
    token = idp.mint_resident(resident, ttl_s=3600)
    (pki_dir.parent / "idp" / "resident-token.txt").write_text(token + "\n", "utf-8")
    async with ResidentClient(token_target, tls=ClientTls(pki_dir / "ca.pem"), token=token) as me:
        log = await me.access_log()
    print(f"\napplicant A's own access log, signed in with an eID token ({dict(log.people)[0]}):")
    rows = [
        (
            a.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            a.organization_name,
            a.procedure_code,
            a.purpose_text,
            f"{a.legal_basis_kind} {a.legal_basis_reference}",
            ", ".join(title for _, title in a.certificates) or "-",
            "yes" if a.officer_identification == "TOKEN" else "no",
            a.decision,
        )
        for a in log.accesses
    ]
    headers = [
        "when (UTC)",
        "who",
        "procedure",
        "purpose",
        "legal basis",
        "certificates",
        "officer authenticated",
    ]
    print(table([*headers, "decision"], rows))
    print(f"  entries are kept {log.retention_days} days; this view is itself traced: {log.view_trace_id}")
    started = time.perf_counter()
    status, page = await open_page_with_token(console_url + "/me", token, ClientTls(pki_dir / "ca.pem"))
    ms = round((time.perf_counter() - started) * 1000)
    print(f"  the same in the console: {console_url}/me answered {status} in {ms} ms (sign-in included)")
    problems = []
    if not any(a.procedure_code == "HOUSING-RENT-SUBSIDY" for a in log.accesses):
        problems.append("applicant A's own access log shows no housing-office request")
    if status != 200 or "HOUSING-RENT-SUBSIDY" not in page or resident.document_number in page:
        problems.append(f"the console's /me for applicant A answered {status} without the housing request")
    return problems


async def keep_running(console_url: str, pki_dir: Path, idp: DemoIdp, broker_target: str) -> None:
    """``onceonly demo --keep``: leave everything running for a person to browse, until Ctrl-C."""
    exported = [export_pkcs12(pki_dir, name, b"demo") for name in CONSOLE_PEOPLE]
    token = idp.mint("officer-0042", DEMO_CONSUMER[0], ttl_s=3600, role="consumer-admin")
    (pki_dir.parent / "idp" / "token.txt").write_text(token + "\n", "utf-8")
    print(
        f"\nthe platform keeps running: console {console_url}, broker {broker_target}\n"
        f"  in a browser, import a certificate (password: demo): {', '.join(str(p) for p in exported)}\n"
        f"  and trust {pki_dir / 'ca.pem'}; or sign in with the token in "
        f"{pki_dir.parent / 'idp' / 'token.txt'} (the housing office's administrators, valid one hour)\n"
        f"  a resident: sign in with {pki_dir.parent / 'idp' / 'resident-token.txt'} (applicant A's eID)\n"
        "  press Ctrl-C to stop"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def run_demo(var_dir: Path | None = None, *, keep: bool = False) -> int:
    var_dir = var_dir or Path(os.environ.get("ONCEONLY_VAR_DIR", "var")) / "demo"
    log_dir = var_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ONCEONLY_LOG_FORMAT": "json"}
    env.pop("ONCEONLY_DATABASE_URL", None)  # the demo always runs on its own embedded SQLite file
    for name in (
        "ONCEONLY_INSECURE",
        "ONCEONLY_TLS_DIR",
        "ONCEONLY_JWT_ISSUERS",
        "ONCEONLY_BROKER_TOKEN_LISTEN",
        "ONCEONLY_SCSP_LISTEN",
    ):
        env.pop(name, None)  # the demo always runs with its own certificates
    seed = resources.files("onceonly.broker").joinpath("data/agreements.toml")
    # Each demo starts from an empty database, so the ledger it verifies at the end is its own;
    # the witness of the previous run's ledger goes with it (kept, it would rightly refuse the
    # empty database as a chain that lost everything).
    stale_files = [*var_dir.glob("onceonly.db*"), *var_dir.glob("db/onceonly.db*")]
    for stale in [*stale_files, var_dir / "ledger" / "witness.jsonl"]:
        stale.unlink(missing_ok=True)
    processes: list[Process] = []
    problems: list[str] = []
    try:
        pki_dir = var_dir / "pki"
        init_pki(pki_dir, providers=PROVIDERS)
        idp = make_idp(var_dir / "idp")
        print(f"certificates (throwaway demo CA) in {pki_dir}; identity provider in {var_dir / 'idp'}")
        as_broker = ClientTls.from_dir(pki_dir, "broker")
        targets = {name: f"127.0.0.1:{free_port()}" for name in PROVIDERS}
        for name, target in targets.items():
            args = ["serve", "provider", name, "--listen", target, "--tls-dir", str(pki_dir)]
            processes.append(spawn(name, args, log_dir, target, env))
        for process in processes:
            await wait_serving(process, tls=as_broker)
        broker_target = f"127.0.0.1:{free_port()}"
        token_target = f"127.0.0.1:{free_port()}"
        scsp_target = f"127.0.0.1:{free_port()}"
        broker_args = [
            "serve",
            "broker",
            "--listen",
            broker_target,
            "--var-dir",
            str(var_dir),
            "--tls-dir",
            str(pki_dir),
            "--jwt-issuers",
            str(idp.issuers_toml),
            "--token-listen",
            token_target,
            "--scsp-listen",
            scsp_target,
        ]
        for name, target in targets.items():
            broker_args += ["--provider", f"{name}={target}"]
        broker_process = spawn("broker", broker_args, log_dir, broker_target, env)
        processes.insert(0, broker_process)
        await wait_serving(broker_process, tls=as_broker)
        print(
            f"broker on {broker_target} (mutual TLS; bearer tokens on {token_target}); providers: "
            + ", ".join(f"{n} on {t}" for n, t in targets.items())
            + " (mutual TLS, the broker's certificate only)"
        )
        problems += await import_governance(broker_target, pki_dir, Path(str(seed)))
        problems += await scenario(broker_target, pki_dir, idp, token_target)
        problems += await scsp_request(f"https://{scsp_target}/scsp", pki_dir, personas()[0][1])
        problems += await resident_report(broker_target, pki_dir, personas()[0][1])
        problems += await governance(broker_target, pki_dir, personas()[0][1])
        console_url = f"https://127.0.0.1:{free_port()}"
        console_args = ["serve", "console", "--listen", console_url.removeprefix("https://")]
        console_args += ["--broker", broker_target, "--tls-dir", str(pki_dir)]
        processes.append(spawn("console", console_args, log_dir, console_url, env))
        problems += await console_tour(console_url, pki_dir)
        problems += await residents_view(console_url, token_target, pki_dir, idp, personas()[0][1])
        if keep:
            await keep_running(console_url, pki_dir, idp, broker_target)
    except Exception as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        problems += stop_all(processes)
    if processes:
        problems += verify_ledger_after(var_dir, env)
    if problems:
        print("\ndemo FAILED:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"all processes stopped cleanly; logs in {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(run_demo()))


def add_commands(sub: Any) -> None:
    """Register ``onceonly demo`` and ``onceonly demo residents``."""
    p = sub.add_parser(
        "demo",
        help="run the whole platform and a caseworker scenario; `demo residents` lists subjects to try",
    )
    p.add_argument(
        "what",
        nargs="?",
        choices=["residents"],
        help="residents: list synthetic residents and what each check answers for them",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the platform and the web console running for a person to browse, until Ctrl-C",
    )
    p.add_argument("--limit", type=int, default=10, help="residents: how many (default %(default)s)")
    p.add_argument("--csv", action="store_true", help="residents: as CSV (document_type,document_number,…)")
    p.add_argument("--known-everywhere", action="store_true", help="residents: only those every agency knows")
    p.set_defaults(handler=cmd_demo)


RESIDENT_COLUMNS = (
    "document_type",
    "document_number",
    "registry.residence/v1",
    "tax.compliance/v1",
    f"income {LATEST_FISCAL_YEAR} (EUR)",
    "employment.unemployment-status/v1",
)


def resident_answers(r: Resident) -> tuple[str, ...]:
    """What the reference providers answer for ``r`` (``SUBJECT_NOT_FOUND`` where unknown)."""
    missing = "SUBJECT_NOT_FOUND"
    return (
        r.document_type,
        r.document_number,
        f"municipality {r.municipality_code}" if r.known_to_registry else missing,
        ("compliant" if r.tax_compliant else "not compliant") if r.known_to_tax else missing,
        str(r.income(LATEST_FISCAL_YEAR)) if r.known_to_tax else missing,
        ("unemployed" if r.registered_unemployed else "not unemployed") if r.known_to_employment else missing,
    )


def list_residents(limit: int, *, as_csv: bool, known_everywhere: bool) -> int:
    chosen = [
        r
        for r in population()
        if not known_everywhere or (r.known_to_registry and r.known_to_tax and r.known_to_employment)
    ][: max(limit, 0)]
    rows = [resident_answers(r) for r in chosen]
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(RESIDENT_COLUMNS)
        writer.writerows(rows)
    else:
        print(table(list(RESIDENT_COLUMNS), rows))
        print(
            f"\n{len(rows)} of the {len(population()):,} synthetic residents the reference providers know "
            "(the same seed everywhere); try one: onceonly verify … --subject "
            + (f"{rows[0][0]}:{rows[0][1]}" if rows else "DNI:…")
        )
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    if args.what == "residents":
        return list_residents(args.limit, as_csv=args.csv, known_everywhere=args.known_everywhere)
    return await run_demo(keep=args.keep)
