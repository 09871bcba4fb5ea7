"""``onceonly governance``: the operator registers an organisation; every member reads the
organisations and the governance log; anyone else's registration is refused, naming the rule."""

from __future__ import annotations

import json

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
    assert "Labour Inspectorate" in out and "registered; governance log entry 1" in out

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
    assert "ORGANISATION_REGISTERED" in out and "SGAD (operator, mtls)" in out and "1 entry" in out


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
    assert code == EXIT_OK and json.loads(out) == []
