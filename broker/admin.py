"""Operator commands that work on the broker's database and keys directly.

    onceonly ledger verify            exit 0 on an intact ledger, 1 naming the first bad record
    onceonly ledger purge --older-than-days N
    onceonly keys rotate              add a signing key; the running broker switches to it

They read the same configuration as the broker (``ONCEONLY_DATABASE_URL``, ``ONCEONLY_VAR_DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from onceonly.broker.config import BrokerConfig

# The database and crypto modules are imported by the commands themselves, so that merely
# building the ``onceonly`` parser stays quick for every other command.


def add_admin_commands(sub: Any) -> None:
    """Register ``ledger`` and ``keys`` on the ``onceonly`` parser's subcommands."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database-url", help="database URL (ONCEONLY_DATABASE_URL)")
        p.add_argument(
            "--var-dir", type=Path, help="state directory with keys/ (ONCEONLY_VAR_DIR; default var)"
        )
        p.add_argument("--json", action="store_true", help="print JSON")

    maintenance = sub.add_parser(
        "maintenance",
        help="put a broker in maintenance mode (health NOT_SERVING, so load balancers drain it) or out",
    )
    maintenance.add_argument("state", choices=["on", "off", "status"])
    maintenance.add_argument(
        "--var-dir", type=Path, help="the broker's state directory (ONCEONLY_VAR_DIR; default var)"
    )
    maintenance.set_defaults(handler=cmd_maintenance)

    ledger = sub.add_parser("ledger", help="verify or purge the trace ledger")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = ledger_sub.add_parser("verify", help="recompute every hash chain and check every checkpoint")
    common(verify)
    verify.add_argument(
        "--witness",
        type=Path,
        help="signed chain heads kept outside the database (default: the broker's, "
        "ONCEONLY_WITNESS_FILE or VAR_DIR/ledger/witness.jsonl; an oversight body's own copy)",
    )
    verify.add_argument(
        "--max-unsigned-age-s",
        type=float,
        help="records older than this that no checkpoint signs are a problem (default: twice "
        "ONCEONLY_CHECKPOINT_INTERVAL_S; 0 turns the check off)",
    )
    verify.set_defaults(handler=cmd_ledger_verify)
    purge = ledger_sub.add_parser("purge", help="remove records older than the retention period")
    common(purge)
    purge.add_argument("--older-than-days", type=int, required=True, help="retention period in days")
    purge.add_argument(
        "--force",
        action="store_true",
        help="purge even when a master agreement states a longer retention",
    )
    purge.set_defaults(handler=cmd_ledger_purge)

    keys = sub.add_parser("keys", help="manage the broker's signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="add a new signing key; older keys stay published")
    common(rotate)
    rotate.set_defaults(handler=cmd_keys_rotate)


def _config(args: argparse.Namespace) -> BrokerConfig:
    return BrokerConfig.from_env(database_url=args.database_url, var_dir=args.var_dir)


async def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from onceonly.broker.attestation import KeyRing
    from onceonly.broker.chain import ChainReport, verify_ledger
    from onceonly.broker.governance_log import verify_governance_log
    from onceonly.broker.storage import create_engine
    from onceonly.broker.witness import WitnessLog, governance_witness_problems, witness_problems

    config = _config(args)
    keys_dir = config.keys_dir / "signing"
    if not keys_dir.is_dir():
        print(f"error: no signing keys in {keys_dir}; set ONCEONLY_VAR_DIR or --var-dir", file=sys.stderr)
        return 2
    witness = WitnessLog(args.witness or config.witness_file)
    engine = create_engine(config.effective_database_url)
    try:
        public = KeyRing.from_directory(keys_dir).public_keys()
        limit = args.max_unsigned_age_s
        if limit is not None and limit < 0:
            print("error: --max-unsigned-age-s must be 0 or more", file=sys.stderr)
            return 2
        if limit is None:
            limit = 2 * config.checkpoint_interval_s
        reports = verify_ledger(
            engine, public, unsigned_limit=timedelta(seconds=limit) if limit > 0 else None
        )
        heads = witness.heads()
        against = witness_problems(engine, heads, public)
        governance = verify_governance_log(engine, public)
        governance.problems.extend(governance_witness_problems(engine, heads, public))
    except ValueError as exc:  # an unreadable witness file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    by_chain = {r.chain_id: r for r in reports}
    for chain_id, problems in against.items():
        report = by_chain.get(chain_id)
        if report is None:
            report = by_chain[chain_id] = ChainReport(chain_id)
            reports.append(report)
        report.problems.extend(problems)
    if not args.json:
        print(
            f"witness {witness.path}: {len(heads)} signed head(s)"
            if heads
            else f"witness {witness.path}: none (only what the database holds was checked)"
        )
    intact = all(r.intact for r in reports) and governance.intact
    if args.json:
        print(
            json.dumps(
                {
                    "intact": intact,
                    "chains": [r.__dict__ for r in reports],
                    "governance": governance.__dict__,
                },
                indent=2,
            )
        )
    else:
        for r in reports:
            state = "intact" if r.intact else "BROKEN"
            print(
                f"chain {r.chain_id}: {r.records} records (seq {r.first_seq}..{r.last_seq}), "
                f"{r.checkpoints} checkpoints: {state}"
            )
            for problem in r.problems:
                print(f"  {problem}")
        state = "intact" if governance.intact else "BROKEN"
        print(f"governance log: {governance.events} entries: {state}")
        for problem in governance.problems:
            print(f"  {problem}")
        total = sum(r.records for r in reports)
        print(f"ledger {'intact' if intact else 'BROKEN'}: {total} records in {len(reports)} chain(s)")
    return 0 if intact else 1


async def cmd_ledger_purge(args: argparse.Namespace) -> int:
    if args.older_than_days < 1:
        print("error: --older-than-days must be at least 1", file=sys.stderr)
        return 2
    from onceonly.broker.chain import purge_before
    from onceonly.broker.jobs import purge_jobs
    from onceonly.broker.master_agreements import latest_masters
    from onceonly.broker.scsp_store import purge_petitions
    from onceonly.broker.storage import create_engine, init_schema
    from onceonly.broker.trace_queries import SqlTraceQueries

    config = _config(args)
    engine = create_engine(config.effective_database_url)
    try:
        init_schema(engine)
        with engine.connect() as conn:
            kept = [m for m in latest_masters(conn).values() if m.retention_days > args.older_than_days]
        if kept and not args.force:
            longest = max(kept, key=lambda m: m.retention_days)
            print(
                f"error: master agreement {longest.id!r} (version {longest.version}) states that traces "
                f"are kept {longest.retention_days} days; purging after {args.older_than_days} would "
                "destroy records it promises to keep (use --older-than-days "
                f"{longest.retention_days}, or --force if the agreements were changed)",
                file=sys.stderr,
            )
            return 2
        # Usage outlives the traces: roll up every closed hour before any of them goes.
        rolled = SqlTraceQueries(engine).roll_up_closed_hours(limit_hours=10**7)
        now = datetime.now(UTC)
        result = purge_before(engine, now - timedelta(days=args.older_than_days))
        jobs = purge_jobs(engine, now - timedelta(days=args.older_than_days), now)
        petitions = purge_petitions(engine, now - timedelta(days=args.older_than_days), now)
    finally:
        engine.dispose()
    if args.json:
        print(
            json.dumps(
                {
                    "records": result.records,
                    "replies": result.replies,
                    "anchors": result.anchors,
                    "hours_rolled_up": rolled,
                    "jobs": jobs,
                    "scsp_petitions": petitions,
                }
            )
        )
    else:
        if rolled:
            print(f"rolled up the usage of {rolled} hour(s) first")
        print(
            f"purged {result.records} records, {result.replies} stored replies, {jobs} asynchronous "
            f"verification job(s) and {petitions} SCSP petition(s)"
        )
        for chain_id, seq in result.anchors.items():
            print(f"  chain {chain_id}: now starts after the checkpoint at seq {seq}")
    return 0


async def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from onceonly.broker.attestation import KeyRing

    config = _config(args)
    directory = config.keys_dir / "signing"
    KeyRing.from_directory(directory)  # make sure a first key exists before adding the next
    path = KeyRing.add_key(directory)
    ring = KeyRing.from_directory(directory)
    if args.json:
        print(json.dumps({"active_kid": ring.active.kid, "kids": [k["kid"] for k in ring.jwks()["keys"]]}))
    else:
        print(f"new signing key {ring.active.kid} ({path.name}); {len(ring.jwks()['keys'])} keys published")
        print("a running broker switches to it within its refresh interval (ONCEONLY_POLICY_REFRESH_S)")
    return 0


async def cmd_maintenance(args: argparse.Namespace) -> int:
    """``onceonly maintenance on|off|status``: the broker's health follows within a few seconds."""
    from onceonly.broker.health import MAINTENANCE_FILE

    var_dir = args.var_dir or Path(os.environ.get("ONCEONLY_VAR_DIR") or "var")
    flag = var_dir / MAINTENANCE_FILE
    if args.state == "on":
        var_dir.mkdir(parents=True, exist_ok=True)
        flag.write_text("the broker reports NOT_SERVING while this file exists\n", "utf-8")
    elif args.state == "off":
        flag.unlink(missing_ok=True)
    print(
        f"maintenance {'on' if flag.exists() else 'off'} ({flag}); the broker's health follows within seconds"
    )
    return 0
