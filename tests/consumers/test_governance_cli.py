"""``onceonly governance``: the operator registers an organisation; every member reads the
organisations and the governance log; anyone else's registration is refused, naming the rule."""

from __future__ import annotations

import json
from pathlib import Path

from onceonly.broker.app import BrokerApp
from tests.conftest import Platform
from tests.consumers.test_oversight_cli import command

EXIT_OK, EXIT_INVALID, EXIT_DENIED = 0, 2, 3


async def test_register_list_and_read_the_log(platform: Platform, broker: BrokerApp) -> None:
    code, out, err = await command(
        platform, broker, "governance", "register", "E00003301", "--name", "Labour Inspectorate",
        "--kind", "consumer", "--contact", "dpo@inspection.example",
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert "Labour Inspectorate" in out and "registered; governance log entry" in out

    code, out, err = await command(platform, broker, "governance", "orgs", "--json", consumer=True)
    assert code == EXIT_OK, err
    orgs = {o["id"]: o for o in json.loads(out)}
    assert orgs["E00003301"] == {
        "id": "E00003301",
        "name": "Labour Inspectorate",
        "kind": "CONSUMER",
        "contact": "dpo@inspection.example",
    }
    code, out, err = await command(platform, broker, "governance", "log")
    assert code == EXIT_OK, err
    assert "SGAD (operator, mtls)" in out and "onceonly (operator, seed)" in out
    last = out.strip().splitlines()[-2]  # the newest entry (the summary line follows)
    assert "ORGANISATION_REGISTERED" in last and "E00003301" in last


async def test_a_consumer_may_not_register_and_bad_input_is_named(
    platform: Platform, broker: BrokerApp
) -> None:
    args = ("governance", "register", "E1", "--name", "Somewhere", "--kind", "CONSUMER")
    code, out, err = await command(platform, broker, *args, consumer=True)
    assert code == EXIT_DENIED and "OPERATOR_ONLY" in out + err
    code, out, err = await command(
        platform, broker, "governance", "register", "bad code", "--name", "X", "--kind", "PROVIDER"
    )
    assert code == EXIT_INVALID and "organisation.id" in out + err
    code, out, err = await command(platform, broker, "governance", "log", "--json")
    assert code == EXIT_OK and not any(e["subject"] == "E1" for e in json.loads(out))


PROPOSAL = """
[agreement]
id = "madrid-parking-permit"
organization = "L01280796"
unit = "Mobility — parking permits"
accountable = "Head of the Mobility Service"
master = "municipal-benefits"
data_protection_officer = "Data Protection Officer, Madrid City Council"
procedures = ["PARKING-PERMIT"]
certificate_types = ["registry.residence/v1"]
legal_bases = ["LAW"]
laws = ["Ley 39/2015 art. 28"]
valid_from = "2025-01-01"
"""


async def test_master_agreements_are_listed_with_their_clauses(platform: Platform, broker: BrokerApp) -> None:
    code, out, err = await command(platform, broker, "governance", "masters", consumer=True)
    assert code == EXIT_OK, err
    municipal = next(line for line in out.splitlines() if line.startswith("municipal-benefits"))
    assert "PARKING-PERMIT" in municipal and "1825 d" in municipal and "SGAD" in municipal
    code, out, err = await command(
        platform, broker, "governance", "masters", "--json", "--id", "employment-services"
    )
    assert code == EXIT_OK, err
    [master] = json.loads(out)
    assert (master["version"], master["procedure_codes"], master["laws"]) == (
        1,
        ["JOB-SEEKER-SUPPORT"],
        ["Ley 3/2023 art. 3"],
    )


async def test_an_agreement_proposed_approved_vetoed_and_revoked_from_the_command_line(
    platform: Platform, broker: BrokerApp, tmp_path: Path
) -> None:
    platform.pki.issue("housing-admin", role="consumer-admin", org="L01280796")
    platform.pki.issue("registry-admin", role="provider-admin", org="registry")
    proposal = tmp_path / "parking.toml"
    proposal.write_text(PROPOSAL, "utf-8")

    code, out, err = await command(
        platform, broker, "governance", "propose", str(proposal), "--cert", "housing-admin"
    )
    assert code == EXIT_OK, out + err
    assert "PROPOSED" in out and "waiting for registry, SGAD" in out and "municipal-benefits v1" in out
    code, out, err = await command(
        platform, broker, "governance", "approve", "madrid-parking-permit", "--cert", "registry-admin"
    )
    assert code == EXIT_OK and "waiting for SGAD" in out and "AGREEMENT_APPROVED" in out, out + err
    code, out, err = await command(platform, broker, "governance", "endorse", "madrid-parking-permit")
    assert code == EXIT_OK and "IN_FORCE" in out and "AGREEMENT_ENDORSED" in out, out + err
    code, out, err = await command(
        platform, broker, "governance", "veto", "madrid-parking-permit", "--cert", "registry-admin"
    )
    assert code == EXIT_INVALID and "reason" in out + err
    code, out, err = await command(
        platform, broker, "governance", "veto", "madrid-parking-permit", "--reason", "audit pending",
        "--cert", "registry-admin",
    )  # fmt: skip
    assert code == EXIT_OK and "SUSPENDED" in out and "veto by registry: audit pending" in out, out + err
    code, out, err = await command(
        platform, broker, "governance", "agreements", "--id", "madrid-parking-permit", "--json"
    )
    assert code == EXIT_OK, err
    [view] = json.loads(out)
    assert (view["version"], view["state"], view["vetoes"]) == (
        1,
        "SUSPENDED",
        [["registry", "audit pending"]],
    )
    code, out, err = await command(
        platform, broker, "governance", "revoke", "madrid-parking-permit", "--reason", "scheme ends",
        "--cert", "registry-admin",
    )  # fmt: skip
    assert code == EXIT_DENIED and "REVOKE_NOT_PERMITTED" in out + err
    bad = tmp_path / "bad.toml"
    bad.write_text('[agreement]\nid = "x"\norganization = "L01280796"\n', "utf-8")
    code, out, err = await command(
        platform, broker, "governance", "propose", str(bad), "--cert", "housing-admin"
    )
    assert code == EXIT_INVALID and "bad.toml" in err and "Traceback" not in err
