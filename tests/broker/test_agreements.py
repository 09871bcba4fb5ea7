"""The policy store: seeding from TOML, snapshots, and the helpers tests use.

Every test that takes ``engine`` runs on SQLite and on PostgreSQL (tests/broker/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.broker.agreements import PolicyStore, parse_agreement
from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import Agreement, LegalBasisKind, Organisation, OrganisationKind, Veto
from onceonly.broker.storage import create_engine, init_schema

LAW, CONSENT = LegalBasisKind.LAW, LegalBasisKind.CONSENT
SEED = Path(str(resources.files("onceonly.broker").joinpath("data/agreements.toml")))


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    init_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> PolicyStore:
    return PolicyStore(engine)


PROVIDER = OrganisationKind.PROVIDER


def test_shipped_seed_gives_the_demo_snapshot(store: PolicyStore) -> None:
    assert store.seed_from_file(SEED, Catalog.load()) == 13
    snap = store.load_snapshot()

    assert snap.organisations == {
        "L01280796": Organisation("L01280796", "Madrid — Housing Office"),
        "E04990101": Organisation("E04990101", "Public Employment Service"),
        "L08019030": Organisation("L08019030", "Barcelona — Social Services"),
        "registry": Organisation("registry", "Population Register", PROVIDER, "interop@registry.example"),
        "tax": Organisation("tax", "Tax Agency", PROVIDER, "interop@tax.example"),
        "employment": Organisation(
            "employment", "Employment and Social Security Service", PROVIDER, "interop@employment.example"
        ),
        "AEPD": Organisation(
            "AEPD", "Data Protection Agency", OrganisationKind.OVERSIGHT, "oversight@aepd.example"
        ),
        "SGAD": Organisation(
            "SGAD",
            "Digital Administration Secretariat (platform operator)",
            OrganisationKind.OPERATOR,
            "operations@sgad.example",
        ),
    }
    by_key = {(a.organization_id, min(a.procedure_codes)): a for a in snap.agreements}
    assert set(by_key) == {
        ("L01280796", "HOUSING-RENT-SUBSIDY"),
        ("L01280796", "SOCIAL-EMERGENCY-AID"),
        ("E04990101", "JOB-SEEKER-SUPPORT"),
        ("L08019030", "HOUSING-RENT-SUBSIDY"),
    }
    madrid = by_key["L01280796", "HOUSING-RENT-SUBSIDY"]
    assert madrid.certificate_type_ids == {
        "registry.residence/v1",
        "registry.household/v1",
        "tax.compliance/v1",
        "tax.income-below-threshold/v1",
        "employment.unemployment-status/v1",
    }
    assert madrid.legal_bases == {LAW, CONSENT}
    assert madrid.legal_references == {"Ley 39/2015 art. 28", "Ley 12/2023 art. 17"}
    assert not madrid.consent_required
    assert madrid.valid_from == datetime(2025, 1, 1, tzinfo=UTC)
    assert madrid.valid_from.tzinfo is not None
    # valid_until = "2030-12-31" in the file is inclusive: the agreement ends at the next midnight.
    assert madrid.valid_until == datetime(2031, 1, 1, tzinfo=UTC)

    jobs = by_key["E04990101", "JOB-SEEKER-SUPPORT"]
    assert jobs.certificate_type_ids == {
        "employment.unemployment-status/v1",
        "employment.social-security-compliance/v1",
    }
    assert jobs.legal_bases == {LAW}
    assert jobs.legal_references == {"Ley 3/2023 art. 3"}

    emergency = by_key["L01280796", "SOCIAL-EMERGENCY-AID"]
    assert emergency.consent_required
    assert emergency.certificate_type_ids == {"registry.residence/v1", "tax.income-below-threshold/v1"}

    barcelona = by_key["L08019030", "HOUSING-RENT-SUBSIDY"]
    assert [(v.agreement_id, v.provider_id) for v in snap.vetoes] == [(barcelona.id, "tax")]


def test_seeding_twice_is_idempotent(store: PolicyStore, engine: sa.Engine) -> None:
    store.seed_from_file(SEED)
    first = store.load_snapshot()
    store.seed_from_file(SEED)
    assert store.load_snapshot() == first
    with engine.connect() as conn:
        counts = {
            t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("organisations", "agreements", "vetoes")
        }
    assert counts == {"organisations": 8, "agreements": 4, "vetoes": 1}


BAD_SEED = """
[[organisations]]
id = "ORG1"
name = "Somewhere"

[[agreements]]
id = "good-one"
organization = "ORG1"
procedure = "P"
certificate_types = ["registry.residence/v1"]
legal_bases = ["CONSENT"]
valid_from = "2025-01-01"

[[agreements]]
id = "broken-one"
organization = "ORG1"
procedure = "P"
certificate_types = ["registry.residence/v1"]
legal_bases = ["MAYBE"]
valid_from = "2025-01-01"
"""
GOOD_SEED = BAD_SEED.replace('["MAYBE"]', '["CONSENT"]')


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (BAD_SEED, "'broken-one'"),
        (BAD_SEED.replace('["MAYBE"]', '["LAW"]'), "'broken-one'"),  # LAW without a cited law
        (
            BAD_SEED.replace('legal_bases = ["MAYBE"]', 'legal_bases = ["CONSENT"]\nvalid_until = "x"'),
            "broken",
        ),
        (
            GOOD_SEED.replace(
                'id = "broken-one"\norganization = "ORG1"', 'id = "broken-one"\norganization = "NOPE"'
            ),
            "NOPE",
        ),
        (GOOD_SEED + '\n[[vetoes]]\nagreement = "missing"\nprovider = "tax"\n', "missing"),
        ("[[agreements]\n", "line 1"),  # not TOML at all
    ],
)
def test_bad_file_names_the_entry_and_writes_nothing(
    store: PolicyStore, tmp_path: Path, text: str, names: str
) -> None:
    store.seed_from_file(SEED)
    before = store.load_snapshot()
    bad = tmp_path / "bad.toml"
    bad.write_text(text, "utf-8")
    with pytest.raises(ValueError) as info:
        store.seed_from_file(bad)
    assert str(bad) in str(info.value)
    assert names in str(info.value)
    assert store.load_snapshot() == before


def test_bad_file_on_an_empty_database_writes_nothing(store: PolicyStore, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_SEED, "utf-8")
    with pytest.raises(ValueError, match="broken-one"):
        store.seed_from_file(bad)
    snap = store.load_snapshot()
    assert (snap.organisations, snap.agreements, snap.vetoes) == ({}, (), ())


def test_catalog_check_rejects_unknown_types(store: PolicyStore, tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text(GOOD_SEED.replace("registry.residence/v1", "nope/v1"))
    with pytest.raises(ValueError, match="nope/v1"):
        store.seed_from_file(seed, Catalog.load())


def test_helpers_round_trip(store: PolicyStore) -> None:
    store.add_organisation(Organisation("ORG1", "Somewhere"))
    agreement = Agreement(
        id="a1",
        organization_id="ORG1",
        procedure_codes=frozenset({"P"}),
        certificate_type_ids=frozenset({"tax.compliance/v1"}),
        legal_bases=frozenset({LAW}),
        legal_references=frozenset({"Ley 1/2000 art. 1"}),
        consent_required=False,
        valid_from=datetime(2025, 1, 1, tzinfo=UTC),
        valid_until=None,
        description="test",
    )
    store.add_agreement(agreement)
    store.add_veto(Veto("a1", "tax", "first"))
    store.add_veto(Veto("a1", "tax", "reworded"))
    snap = store.load_snapshot()
    assert snap.agreements == (agreement,)
    assert snap.vetoes == (Veto("a1", "tax", "reworded"),)
    assert store.remove_veto("a1", "tax")
    assert not store.remove_veto("a1", "tax")
    assert store.load_snapshot().vetoes == ()


def test_agreement_needs_a_known_organisation(store: PolicyStore) -> None:
    orphan = Agreement(
        id="a1",
        organization_id="NOBODY",
        procedure_codes=frozenset({"P"}),
        certificate_type_ids=frozenset({"tax.compliance/v1"}),
        legal_bases=frozenset({CONSENT}),
        legal_references=frozenset(),
        consent_required=False,
        valid_from=datetime(2025, 1, 1, tzinfo=UTC),
        valid_until=None,
    )
    with pytest.raises(sa.exc.IntegrityError):  # foreign keys are enforced
        store.add_agreement(orphan)


def test_disclosure_terms_in_a_governance_file() -> None:
    base = {
        "organization": "L01280796",
        "procedure": "P",
        "certificate_types": ["registry.residence/v1"],
        "legal_bases": ["CONSENT"],
        "valid_from": "2025-01-01",
    }
    deferred = parse_agreement(
        "a", {**base, "disclosure": "DEFERRED", "disclosure_until": "2027-06-30"}, "f", None
    )
    assert (deferred.disclosure.value, str(deferred.disclosure_until)) == ("DEFERRED", "2027-06-30")
    assert parse_agreement("b", base, "f", None).disclosure.value == "IMMEDIATE"
    with pytest.raises(ValueError, match="needs the date"):
        parse_agreement("c", {**base, "disclosure": "DEFERRED"}, "f", None)
    with pytest.raises(ValueError, match="needs the law"):
        parse_agreement("d", {**base, "disclosure": "WITHHELD"}, "f", None)
    with pytest.raises(ValueError, match="'disclosure' must be one of"):
        parse_agreement("e", {**base, "disclosure": "LATER"}, "f", None)
