"""Shared definitions: every certificate type publishes JSON Schemas of its parameters and claims,
titles and descriptions in English and Spanish, and its version history; a version past its sunset
is refused, naming its replacement."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jsonschema
import pytest
from google.protobuf import json_format

from onceonly.broker.app import BrokerApp
from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import Agreement, LegalBasisKind, Organisation, PolicySnapshot
from onceonly.broker.errors import CatalogError
from onceonly.broker.policy import Policy
from onceonly.v1 import broker_pb2
from tests.broker.test_policy import request
from tests.conftest import Platform, verify_request

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def test_every_schema_is_valid_json_schema_and_means_what_the_catalog_says() -> None:
    catalog = Catalog.load()
    for c in catalog.certificate_types.values():
        for schema in (c.parameters_schema(), c.claims_schema()):
            jsonschema.Draft202012Validator.check_schema(schema)
    residence = jsonschema.Draft202012Validator(
        catalog.certificate_types["registry.residence/v1"].parameters_schema()
    )
    assert residence.is_valid({"municipality_code": "28079"})
    assert not residence.is_valid({}), "a required parameter"
    assert not residence.is_valid({"municipality_code": "28079", "extra": "x"}), "nothing undeclared"
    income = jsonschema.Draft202012Validator(
        catalog.certificate_types["tax.income-below-threshold/v1"].parameters_schema()
    )
    assert not income.is_valid({"threshold_eur": "18000"}) and income.is_valid({"threshold_eur": 18000})


async def test_what_providers_answer_matches_the_published_claims_schemas(
    platform: Platform, broker: BrokerApp
) -> None:
    stub = platform.stub(broker)
    catalog = await stub.GetCatalog(broker_pb2.GetCatalogRequest(), timeout=5)
    schemas = {c.id: json.loads(c.claims_schema) for c in catalog.certificate_types}
    reply = await stub.Verify(verify_request(), timeout=10)
    answered = [r for r in reply.outcomes if r.claims.fields]
    assert answered, "some check answered with claims"
    for result in answered:
        claims: dict[str, Any] = json_format.MessageToDict(result.claims)
        jsonschema.validate(claims, schemas[result.certificate_type_id])


async def test_the_catalog_publishes_titles_in_two_languages_and_history(
    platform: Platform, broker: BrokerApp
) -> None:
    catalog = await platform.stub(broker).GetCatalog(broker_pb2.GetCatalogRequest(), timeout=5)
    residence = next(c for c in catalog.certificate_types if c.id == "registry.residence/v1")
    assert dict(residence.titles) == {"en": "Registered residence", "es": "Empadronamiento"}
    assert residence.descriptions["es"].startswith("Si la persona está empadronada")
    assert (residence.introduced, residence.sunset, residence.replaced_by) == ("2025-01-01", "", "")


def _catalog(**v1: Any) -> Catalog:
    types = [
        {"id": "x.fact/v1", "title": "Fact", "provider": "p", "legal_bases": ["LAW"], "claims": [], **v1},
        {"id": "x.fact/v2", "title": "Fact", "provider": "p", "legal_bases": ["LAW"], "claims": []},
    ]
    return Catalog.from_dict({"providers": [{"id": "p", "name": "P"}], "certificate_types": types})


def test_a_version_past_its_sunset_is_refused_naming_its_replacement() -> None:
    catalog = _catalog(sunset="2026-06-30", replaced_by="x.fact/v2")
    agreement = Agreement(
        id="a",
        organization_id="ORG",
        procedure_codes=frozenset({"P"}),
        certificate_type_ids=frozenset({"x.fact/v1", "x.fact/v2"}),
        legal_bases=frozenset({LegalBasisKind.LAW}),
        legal_references=frozenset({"Ley 1/2000"}),
        consent_required=False,
        valid_from=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        valid_until=None,
    )
    policy = Policy(PolicySnapshot({"ORG": Organisation("ORG", "Org")}, (agreement,), ()), catalog)
    ask = request("x.fact/v1", org="ORG", procedure="P", reference="Ley 1/2000")
    assert policy.evaluate(ask, dt.datetime(2026, 6, 30, 23, 0, tzinfo=dt.UTC)).allowed, (
        "served through its last day"
    )
    decision = policy.evaluate(ask, dt.datetime(2026, 7, 1, tzinfo=dt.UTC))
    assert not decision.allowed
    [violation] = decision.violations
    assert "retired after 2026-06-30; use 'x.fact/v2'" in violation.description


def test_bad_history_is_a_catalog_error() -> None:
    with pytest.raises(CatalogError, match="'sunset' must be a date"):
        _catalog(sunset="soon")
    with pytest.raises(CatalogError, match=r"replaced by unknown 'x\.fact/v9'"):
        _catalog(replaced_by="x.fact/v9")
