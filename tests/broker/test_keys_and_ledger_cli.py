"""Key rotation, and the operator commands ``onceonly ledger verify|purge`` and ``keys rotate``."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import OKPKey

from onceonly.broker.app import BrokerApp
from tests.broker.test_attestation import ALGORITHMS, _b64decode, _b64encode, _verify
from tests.conftest import Platform, verify_kwargs
from tests.consumers.test_cli import cli

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


async def test_rotation_switches_new_attestations_and_old_ones_still_verify(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker(policy_refresh_s=0.05)
    client = platform.client(app)
    before = await client.verify(**verify_kwargs())
    old_token = before.outcomes[0].attestation

    code, out, err = await cli("keys", "rotate", "--var-dir", str(platform.var_dir))
    assert code == 0, err
    for _ in range(100):  # bounded: the broker re-reads its keys every 50 ms here
        if len((await client.jwks())["keys"]) == 2:
            break
        await asyncio.sleep(0.05)
    after = await client.verify(**verify_kwargs())
    new_token = after.outcomes[0].attestation

    jwks = await client.jwks()
    old_header, _ = _verify(old_token, jwks)
    new_header, _ = _verify(new_token, jwks)
    assert old_header["kid"] != new_header["kid"]
    assert new_header["kid"] in out
    assert jwks["keys"][0]["kid"] == new_header["kid"]  # newest first


async def test_a_forged_kid_does_not_verify(platform: Platform, broker: BrokerApp) -> None:
    client = platform.client(broker)
    token = (await client.verify(**verify_kwargs())).outcomes[0].attestation
    jwks = await client.jwks()
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(_b64decode(header_b64))

    # A forger's own key, presented under the broker's kid: the signature does not match.
    forger = OKPKey.generate_key("Ed25519")
    forged = jws.serialize_compact(header, _b64decode(payload_b64), forger, algorithms=ALGORITHMS)
    assert json.loads(_b64decode(forged.split(".")[0]))["kid"] == header["kid"]
    with pytest.raises(BadSignatureError):
        _verify(forged, jwks)

    # The broker's real signature under a kid the JWKS does not have: no key verifies it.
    renamed = _b64encode(json.dumps({**header, "kid": "not-a-broker-key"}).encode())
    with pytest.raises(JoseError):
        _verify(f"{renamed}.{payload_b64}.{signature_b64}", jwks)


async def test_ledger_verify_passes_then_names_an_edited_record(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    client = platform.client(app)
    results = [await client.verify(**verify_kwargs()) for _ in range(3)]
    await app.stop(0)  # flushes the ledger and signs a final checkpoint

    code, out, err = await cli("ledger", "verify", "--var-dir", str(platform.var_dir))
    assert code == 0, out + err
    assert "ledger intact: 3 records in 1 chain(s)" in out

    victim = results[1].trace_id
    conn = sqlite3.connect(platform.db_path)
    with conn:
        conn.execute("UPDATE trace_records SET purpose_text = 'something else' WHERE trace_id = ?", (victim,))
    conn.close()
    code, out, _ = await cli("ledger", "verify", "--var-dir", str(platform.var_dir))
    assert code == 1
    assert f"seq 2 (trace {victim}): content does not match its hash (edited)" in out


async def test_ledger_purge_keeps_recent_records(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    await platform.client(app).verify(**verify_kwargs())
    await app.stop(0)

    purge = ("ledger", "purge", "--older-than-days", "30", "--var-dir", str(platform.var_dir))
    code, out, err = await cli(*purge)
    assert code == 2 and "states that traces are kept 1825 days" in err, "the master agreements' retention"
    code, out, err = await cli(*purge, "--force")
    assert code == 0, err
    assert "purged 0 records" in out
    assert len(platform.trace_rows()) == 1
    code, _, err = await cli("ledger", "purge", "--older-than-days", "0", "--var-dir", str(platform.var_dir))
    assert code == 2 and "at least 1" in err
