"""Broker replicas sharing one PostgreSQL: one hash chain each, one ledger, one answer per request id.

The production shape (docs/scaling.md): every replica mounts the same keys directory (signing
keys, so the JWKS is the same whichever replica answers; the pseudonym key, so one resident has
one pseudonym; the reply key, so any replica can replay another's answer) and has its own
``ONCEONLY_CHAIN_ID``, so no replica waits on another's chain. Here two brokers share the test's
var dir (its ``keys/``) and a fresh PostgreSQL schema, take interleaved load, and the ledger is
then verified as a whole: by :func:`broker.chain.verify_ledger` and by ``onceonly ledger verify``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections import Counter

import grpc
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from onceonly.broker.app import BrokerApp
from onceonly.broker.attestation import KeyRing
from onceonly.broker.chain import verify_ledger
from onceonly.broker.storage import create_engine
from onceonly.consumers.client import BrokerClient, Denied, Purpose, Verification
from onceonly.consumers.oversight import OversightClient, TraceQuery
from onceonly.pki import ClientTls
from onceonly.processes import onceonly_argv
from onceonly.providers import synthetic
from onceonly.v1 import broker_pb2_grpc
from tests.conftest import ORG, Platform, free_port, known_everywhere, verify_kwargs, verify_request

REQUESTS = 200  # alternating between the two replicas, all in flight together (bounded)
DENIED_EVERY = 10  # every tenth asks for a procedure without an agreement: denied, and traced
SHARED_IDS = 5  # request ids sent to both replicas at the same moment
CONCURRENCY = 32


def residents(n: int) -> list[synthetic.Resident]:
    known = [r for r in synthetic.population() if known_everywhere(r)]
    return list(itertools.islice(itertools.cycle(known), n))


def table_rows(url: str, sql: str) -> list[sa.Row[tuple[object, ...]]]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)))
    finally:
        engine.dispose()


async def ledger_cli(*args: str, database_url: str) -> tuple[int, str, str]:
    """``onceonly ledger ARGS`` as an operator runs it, configured by the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["ONCEONLY_DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        *onceonly_argv(),
        "ledger",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def start_replicas(platform: Platform, database_url: str, **changes: object) -> list[BrokerApp]:
    """Two brokers on one database, sharing the var dir's keys, each with its own chain."""
    return [
        await platform.start_broker(database_url=database_url, chain_id=f"replica-{name}", **changes)
        for name in ("a", "b")
    ]


async def test_two_replicas_share_one_postgresql_and_one_verifiable_ledger(
    platform: Platform, postgres_url: str
) -> None:
    await platform.start_reference_providers()
    # A checkpoint every 25 records: each chain gets several, and verification checks them all.
    replicas = await start_replicas(platform, postgres_url, checkpoint_every=25)
    clients = [platform.client(app) for app in replicas]
    assert (await clients[0].jwks()) == (await clients[1].jwks())  # one key set, whichever answers

    # Interleaved load: request i goes to replica i % 2; all of them in flight at once (bounded).
    gate = asyncio.Semaphore(CONCURRENCY)
    people = residents(REQUESTS + SHARED_IDS)
    granted: dict[str, Verification] = {}
    denied: dict[str, str] = {}

    async def one(i: int) -> None:
        client = clients[i % 2]
        request_id = f"load-{i}"
        kwargs = verify_kwargs(people[i])
        if i % DENIED_EVERY == 0:
            kwargs["purpose"] = Purpose("NO-AGREEMENT", "Something else", f"EXP-{i}")
        async with gate:
            try:
                granted[request_id] = await client.verify(request_id=request_id, **kwargs)
            except Denied as exc:
                denied[request_id] = exc.trace_id

    # ...and, at the same time, a few request ids sent to both replicas at the same moment.
    async def both(j: int) -> tuple[Verification, Verification]:
        kwargs = verify_kwargs(people[REQUESTS + j])
        request_id = f"shared-{j}"
        first, second = await asyncio.gather(
            clients[0].verify(request_id=request_id, **kwargs),
            clients[1].verify(request_id=request_id, **kwargs),
        )
        return first, second

    results = await asyncio.gather(*(one(i) for i in range(REQUESTS)), *(both(j) for j in range(SHARED_IDS)))
    shared = [r for r in results if r is not None]
    assert len(granted) + len(denied) == REQUESTS
    assert len(denied) == REQUESTS // DENIED_EVERY
    assert all(all(o.verified for o in v.outcomes) for v in granted.values())
    for first, second in shared:
        # Idempotency holds across replicas: one decision, one trace, the same answer from both.
        assert first == second
    distinct = REQUESTS + SHARED_IDS
    answered = {v.trace_id for v in granted.values()} | set(denied.values())
    answered |= {first.trace_id for first, _ in shared}
    assert len(answered) == distinct

    # Oversight through either replica sees the whole ledger, both chains.
    oversight_tls = ClientTls.from_dir(platform.pki.dir, "oversight")
    for app in replicas:
        async with OversightClient(app.target, tls=oversight_tls, timeout=10) as oversight:
            seen = [t.trace_id async for t in oversight.traces(TraceQuery(consumer_organization_id=ORG))]
        assert sorted(seen) == sorted(answered)

    for app in replicas:
        await app.stop(0)  # flushes the ledger and signs a final checkpoint of each chain

    rows = table_rows(postgres_url, "SELECT trace_id, chain_id FROM trace_records")
    chain_of = {row.trace_id: row.chain_id for row in rows}
    assert set(chain_of) == answered  # one trace per distinct request, none lost, none doubled
    per_chain = Counter(chain_of.values())
    assert set(per_chain) == {"replica-a", "replica-b"}
    # Each replica traced its own half (the shared ids went to whichever decided first).
    assert all(REQUESTS // 2 <= n <= REQUESTS // 2 + SHARED_IDS for n in per_chain.values()), per_chain
    assert {chain_of[t] for t in denied.values()} == {"replica-a"}  # i % 10 == 0 went to replica a
    replies = table_rows(postgres_url, "SELECT count(*) AS n FROM replies")[0].n
    assert replies == distinct

    engine = create_engine(postgres_url, poolclass=NullPool)
    try:
        public = KeyRing.from_directory(replicas[0].config.keys_dir / "signing").public_keys()
        reports = verify_ledger(engine, public)
    finally:
        engine.dispose()
    assert [r.chain_id for r in reports] == ["replica-a", "replica-b"]
    for report in reports:
        assert report.intact, report.problems
        assert report.first_seq == 1 and report.last_seq == report.records == per_chain[report.chain_id]
        assert report.checkpoints >= 2  # every 25 records (or more, by batch), and one at stop
    assert sum(r.records for r in reports) == distinct

    code, out, err = await ledger_cli("verify", "--var-dir", str(platform.var_dir), database_url=postgres_url)
    assert code == 0, out + err
    assert f"ledger intact: {distinct} records in 2 chain(s)" in out
    code, out, err = await ledger_cli(
        "verify", "--json", "--var-dir", str(platform.var_dir), database_url=postgres_url
    )
    assert code == 0, out + err
    report = json.loads(out)
    assert report["intact"] is True
    assert {c["chain_id"]: c["records"] for c in report["chains"]} == dict(per_chain)


async def test_replicas_on_one_host_share_one_port_with_so_reuseport(
    platform: Platform, postgres_url: str
) -> None:
    """``ONCEONLY_REUSE_PORT``: two processes (here two servers) bound to one address; the kernel
    spreads connections over them, and each traces to its own chain."""
    await platform.start_reference_providers()
    listen = f"127.0.0.1:{free_port()}"
    replicas = await start_replicas(platform, postgres_url, listen=listen, reuse_port=True)
    assert replicas[0].target == replicas[1].target == listen

    # Twenty separate connections (no shared subchannel pool): with two listeners, all twenty
    # landing on one of them has a probability of 2 * 2**-20.
    credentials = platform.pki.consumer(ORG).channel_credentials()
    channels = [
        grpc.aio.secure_channel(listen, credentials, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(20)
    ]
    try:
        stubs = [broker_pb2_grpc.BrokerStub(c) for c in channels]
        people = residents(len(stubs) * 3)
        replies = await asyncio.gather(
            *(
                stubs[i % len(stubs)].Verify(verify_request(r, request_id=uuid.uuid4().hex), timeout=20)
                for i, r in enumerate(people)
            )
        )
    finally:
        for c in channels:
            await c.close()
    assert all(len(reply.outcomes) == 4 for reply in replies)
    for app in replicas:
        await app.stop(0)

    per_chain = Counter(
        row.chain_id for row in table_rows(postgres_url, "SELECT chain_id FROM trace_records")
    )
    assert set(per_chain) == {"replica-a", "replica-b"}, per_chain
    assert sum(per_chain.values()) == len(people)


async def test_a_client_fails_over_between_replicas(platform: Platform, postgres_url: str) -> None:
    """A replica that stops loses nothing committed: a retry of the same id at the other replica
    is answered from the shared ledger, with the same trace."""
    await platform.start_reference_providers()
    a, b = await start_replicas(platform, postgres_url)
    kwargs = verify_kwargs(residents(1)[0])
    first = await platform.client(a).verify(request_id="failover-1", **kwargs)
    await a.stop(0)
    async with BrokerClient(b.target, tls=platform.pki.consumer(ORG), timeout=10) as other:
        again = await other.verify(request_id="failover-1", **kwargs)
    assert again == first
    rows = table_rows(postgres_url, "SELECT chain_id FROM trace_records")
    assert [row.chain_id for row in rows] == ["replica-a"]
