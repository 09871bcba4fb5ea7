"""The policy engine: is this request allowed by a data-sharing agreement? Deny by default.

Evaluation runs on every request (the hot path), so everything that does not depend on
the request is prepared once when a ``Policy`` is built from a snapshot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from onceonly.broker.catalog import Catalog, CertificateTypeDef
from onceonly.broker.domain import (
    Agreement,
    AgreementRef,
    AllowedUse,
    ConsumerRef,
    DenialReason,
    LegalBasisKind,
    OfficerIdentification,
    OrganisationKind,
    PolicyDecision,
    PolicySnapshot,
    VerificationRequest,
    Violation,
)

__all__ = ["Policy", "normalise_reference"]


def normalise_reference(text: str) -> str:
    """The comparable form of a legal reference: case-folded, whitespace collapsed."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An agreement with what evaluation needs precomputed."""

    agreement: Agreement
    references: frozenset[str]  # normalised legal references
    vetoes: dict[str, str]  # provider id -> reason


# Per-agreement rules are checked in a fixed order (in force, veto, catalog basis, consent,
# agreement basis, law cited) and a failure is ranked by its position. When no agreement
# passes, the candidate that failed furthest down is the closest to being allowed, so its
# failure is the most useful explanation.


class Policy:
    """Decides whether a verification request is allowed by the agreements of a snapshot."""

    def __init__(self, snapshot: PolicySnapshot, catalog: Catalog) -> None:
        self._organisations = frozenset(
            o.id for o in snapshot.organisations.values() if o.kind is OrganisationKind.CONSUMER
        )
        self._catalog = catalog
        vetoes: dict[str, dict[str, str]] = {}
        for v in snapshot.vetoes:
            vetoes.setdefault(v.agreement_id, {})[v.provider_id] = v.reason
        index: dict[tuple[str, str], list[_Prepared]] = {}
        for a in sorted(snapshot.agreements, key=lambda a: a.id):
            for name, value in (("valid_from", a.valid_from), ("valid_until", a.valid_until)):
                if value is not None and value.tzinfo is None:
                    raise ValueError(f"agreement {a.id!r}: {name} must be timezone-aware")
            prepared = _Prepared(
                agreement=a,
                references=frozenset(normalise_reference(r) for r in a.legal_references),
                vetoes=vetoes.get(a.id, {}),
            )
            for procedure in a.procedure_codes:
                index.setdefault((a.organization_id, procedure), []).append(prepared)
        self._index = {key: tuple(agreements) for key, agreements in index.items()}
        self._by_id = {a.id: a for a in snapshot.agreements}

    def agreement(self, agreement_id: str) -> Agreement | None:
        """The agreement (as enforced) with this id."""
        return self._by_id.get(agreement_id)

    def legal_references(
        self, organization_id: str, procedure_code: str, certificate_type_id: str
    ) -> list[str]:
        """The laws cited by ``organization_id``'s agreements for ``procedure_code`` that cover
        ``certificate_type_id``, in agreement order: what an SCSP ``Consentimiento=Ley`` request,
        which names no law, is decided under."""
        return [
            reference
            for p in self._index.get((organization_id, procedure_code), ())
            if certificate_type_id in p.agreement.certificate_type_ids
            for reference in sorted(p.agreement.legal_references)
        ]

    def allowed_uses(self, organization_id: str, now: dt.datetime) -> dict[str, list[AllowedUse]]:
        """Certificate type id → how ``organization_id`` may use it now (agreements in force, not
        suspended, not vetoed for the type's provider; the legal bases both sides allow)."""
        uses: dict[str, list[AllowedUse]] = {}
        if organization_id not in self._organisations:
            return uses
        for (org, procedure), candidates in sorted(self._index.items()):
            if org != organization_id:
                continue
            for p in candidates:
                a = p.agreement
                if a.suspended or now < a.valid_from or (a.valid_until is not None and now >= a.valid_until):
                    continue
                for cid in sorted(a.certificate_type_ids):
                    cert = self._catalog.get(cid)
                    if cert is None or cert.provider_id in p.vetoes:
                        continue
                    bases = a.legal_bases & cert.legal_bases
                    if a.consent_required:
                        bases &= {LegalBasisKind.CONSENT}
                    if bases:
                        uses.setdefault(cid, []).append(
                            AllowedUse(
                                a.id, a.version, procedure, tuple(k for k in LegalBasisKind if k in bases)
                            )
                        )
        return uses

    def evaluate(self, request: VerificationRequest, now: dt.datetime) -> PolicyDecision:
        """Decide: allowed (with the agreement that allows each check) or a denial.

        A denial lists every broken rule (one per refused check); the first decides the
        reason. An unknown consumer, a self-query or an unauthorised procedure stop early:
        nothing further could be allowed.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        consumer = request.consumer
        org = consumer.organization_id
        procedure = request.purpose.procedure_code
        if org not in self._organisations:
            return PolicyDecision(
                (
                    Violation(
                        DenialReason.UNKNOWN_CONSUMER,
                        "consumer.organization_id",
                        f"Organisation {org!r} is not a known consumer of the broker.",
                    ),
                )
            )
        officer = consumer.officer_document
        if (
            officer is not None
            and officer.document_type == request.subject.document_type
            and officer.document_number.strip().casefold()
            == request.subject.document_number.strip().casefold()
        ):
            return PolicyDecision(
                (
                    Violation(
                        DenialReason.SELF_QUERY_FORBIDDEN,
                        "subject",
                        f"Officer {consumer.officer_id!r} may not verify facts about themselves.",
                    ),
                )
            )
        candidates = self._index.get((org, procedure))
        if not candidates:
            return PolicyDecision(
                (
                    Violation(
                        DenialReason.PROCEDURE_NOT_AUTHORISED,
                        "purpose.procedure_code",
                        f"No agreement authorises organisation {org!r} for procedure {procedure!r}.",
                    ),
                )
            )

        basis = request.legal_basis
        reference = normalise_reference(basis.reference) if basis.kind is LegalBasisKind.LAW else ""
        violations: list[Violation] = []
        grounds: list[AgreementRef] = []
        seen: set[str] = set()
        for check in request.checks:
            cid = check.certificate_type_id
            if cid in seen:  # the same type twice (other parameters) has the same answer
                continue
            seen.add(cid)
            found = self._check(cid, candidates, org, procedure, basis.kind, reference, now, consumer)
            if isinstance(found, Violation):
                violations.append(found)
            else:
                grounds.append(AgreementRef(cid, found.id, found.version))
        return PolicyDecision(tuple(violations)) if violations else PolicyDecision(grounds=tuple(grounds))

    def _check(
        self,
        cid: str,
        candidates: Iterable[_Prepared],
        org: str,
        procedure: str,
        kind: LegalBasisKind,
        reference: str,
        now: dt.datetime,
        consumer: ConsumerRef,
    ) -> Violation | Agreement:
        """The agreement that allows ``cid``; else the failure of the best candidate."""
        cert = self._catalog.get(cid)
        if cert is None:
            return Violation(
                DenialReason.CERTIFICATE_TYPE_NOT_COVERED,
                cid,
                f"Certificate type {cid!r} is not in the catalog.",
            )
        if cert.retired(now):
            instead = f"; use {cert.replaced_by!r}" if cert.replaced_by else ""
            return Violation(
                DenialReason.CERTIFICATE_TYPE_NOT_COVERED,
                cid,
                f"Certificate type {cid!r} was retired after {cert.sunset}{instead}.",
            )
        best: tuple[int, Violation] | None = None
        covered = False
        for p in candidates:
            if cid not in p.agreement.certificate_type_ids:
                continue
            covered = True
            failure = _first_failure(p, cert, kind, reference, now, consumer)
            if failure is None:
                return p.agreement
            if best is None or failure[0] > best[0]:
                best = failure
        if not covered or best is None:
            return Violation(
                DenialReason.CERTIFICATE_TYPE_NOT_COVERED,
                cid,
                f"No agreement of organisation {org!r} for procedure {procedure!r} "
                f"covers certificate type {cid!r}.",
            )
        return best[1]


def _first_failure(
    p: _Prepared,
    cert: CertificateTypeDef,
    kind: LegalBasisKind,
    reference: str,
    now: dt.datetime,
    consumer: ConsumerRef,
) -> tuple[int, Violation] | None:
    """The first rule this agreement breaks for this check, with its rank."""
    a = p.agreement
    cid = cert.id
    if now < a.valid_from or (a.valid_until is not None and now >= a.valid_until):
        until = a.valid_until.isoformat() if a.valid_until is not None else "open-ended"
        return 0, Violation(
            DenialReason.AGREEMENT_NOT_IN_FORCE,
            cid,
            f"Agreement {a.id!r} (version {a.version}) is not in force at {now.isoformat()} "
            f"(valid from {a.valid_from.isoformat()} until {until}).",
        )
    if a.suspended:
        return 0, Violation(
            DenialReason.AGREEMENT_NOT_IN_FORCE,
            cid,
            f"Agreement {a.id!r} (version {a.version}) is suspended: {a.suspended}.",
        )
    veto_reason = p.vetoes.get(cert.provider_id)
    if veto_reason is not None:
        because = f": {veto_reason}" if veto_reason else ""
        return 1, Violation(
            DenialReason.PROVIDER_VETO,
            cid,
            f"Provider {cert.provider_id!r} has vetoed agreement {a.id!r} (version {a.version}){because}.",
        )
    if kind not in cert.legal_bases:
        return 2, Violation(
            DenialReason.LEGAL_BASIS_NOT_ALLOWED,
            cid,
            f"Certificate type {cid!r} cannot be requested under legal basis {kind.value} "
            f"(the catalog allows {_names(cert.legal_bases)}).",
        )
    # Checked before the agreement's bases: "this procedure needs consent" says more
    # than "LAW is not allowed" when an agreement is consent-only.
    if a.consent_required and kind is not LegalBasisKind.CONSENT:
        return 3, Violation(
            DenialReason.CONSENT_REQUIRED,
            cid,
            f"Agreement {a.id!r} requires the subject's consent; a legal basis of {kind.value} "
            "is not enough.",
        )
    if kind not in a.legal_bases:
        return 4, Violation(
            DenialReason.LEGAL_BASIS_NOT_ALLOWED,
            cid,
            f"Agreement {a.id!r} does not allow legal basis {kind.value} "
            f"(it allows {_names(a.legal_bases)}).",
        )
    if kind is LegalBasisKind.LAW and reference not in p.references:
        return 5, Violation(
            DenialReason.LEGAL_REFERENCE_NOT_IN_AGREEMENT,
            cid,
            f"The cited law is not among those of agreement {a.id!r} "
            f"({', '.join(sorted(a.legal_references)) or 'none'}).",
        )
    if a.officer_token_required and consumer.officer_identification is not OfficerIdentification.TOKEN:
        return 6, Violation(
            DenialReason.OFFICER_NOT_AUTHENTICATED,
            cid,
            f"Agreement {a.id!r} requires the officer to be authenticated by a token from the "
            "agency's identity provider; an application certificate only asserts the officer.",
        )
    if a.officer_document_required and consumer.officer_document is None:
        return 7, Violation(
            DenialReason.OFFICER_DOCUMENT_REQUIRED,
            cid,
            f"Agreement {a.id!r} requires the officer's own identity document "
            "(consumer.officer_document), so that an officer cannot look themselves up.",
        )
    return None


def _names(kinds: Iterable[LegalBasisKind]) -> str:
    return ", ".join(sorted(k.value for k in kinds)) or "none"
