"""``onceonly governance orgs|register|log``: the Governance service for people.

Credentials as for the other client commands; without ``--cert``, ``--token`` or ``--insecure``
the certificate ``operator`` in ``--tls-dir`` is used (any member may read)::

    onceonly governance orgs [--json]
    onceonly governance register CODE --name NAME --kind CONSUMER|PROVIDER|OVERSIGHT|OPERATOR
                                 [--contact TEXT] [--json]       (the platform operator only)
    onceonly governance log [--after SEQ] [--json]
    onceonly governance import FILE.toml [--dry-run] [--json]  (the platform operator only)
    onceonly governance status ORG [--json]     the joining checklist; exit 0 complete, 1 not yet
    onceonly governance agreements [--id AGREEMENT] [--json]
    onceonly governance propose FILE.toml                   (a consumer's administrators)
    onceonly governance approve|veto|lift-veto|suspend|resume|revoke AGREEMENT
                                 [--version N] [--reason TEXT] [--json]

``propose`` reads one ``[agreement]`` table written like the seed file's agreements (``id``,
``organization``, ``procedure``, ``certificate_types``, ``legal_bases``, ``laws``, ``valid_from``,
``valid_until``…), plus ``unit`` (responsible) and ``accountable`` (a named role).

Exit codes as for the other client commands.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from onceonly.consumers._console import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    client_command,
    connect_as,
    dump_json,
    inherit_options,
    run_client,
    table,
    utc_time,
)
from onceonly.consumers.governance import (
    ACTIONS,
    KINDS,
    AgreementTerms,
    AgreementView,
    GovernanceClient,
    MasterAgreement,
    Organisation,
)

DEFAULT_CERT = "operator"


def connect(args: argparse.Namespace) -> GovernanceClient:
    """A Governance client with the flags' credentials; the ``operator`` certificate by default."""
    return connect_as(args, GovernanceClient, DEFAULT_CERT, "operator")


async def _run(args: argparse.Namespace, body: Callable[[GovernanceClient], Awaitable[None]]) -> int:
    return await run_client(args, connect, body)


def _print_organisations(orgs: list[Organisation]) -> None:
    print(
        table(["code", "name", "kind", "contact"], [(o.id, o.name, o.kind, o.contact or "-") for o in orgs])
    )


async def cmd_orgs(args: argparse.Namespace) -> int:
    async def body(client: GovernanceClient) -> None:
        orgs = await client.organisations()
        if args.json:
            print(dump_json([asdict(o) for o in orgs]))
        else:
            _print_organisations(orgs)

    return await _run(args, body)


async def cmd_register(args: argparse.Namespace) -> int:
    async def body(client: GovernanceClient) -> None:
        org, entry = await client.register_organisation(
            Organisation(args.code, args.name, args.kind, args.contact or "")
        )
        if args.json:
            print(dump_json({"organisation": asdict(org), "entry": asdict(entry)}))
            return
        _print_organisations([org])
        print(f"registered; governance log entry {entry.seq} ({entry.hash[:16]}…)")

    return await _run(args, body)


async def cmd_log(args: argparse.Namespace) -> int:
    async def body(client: GovernanceClient) -> None:
        entries = [e async for e in client.log(after_seq=args.after)]
        if args.json:
            print(dump_json([asdict(e) for e in entries]))
            return
        rows = [
            (
                e.seq,
                utc_time(e.at),
                f"{e.actor_organization_id} ({e.actor_role}, {e.actor_via})",
                e.action,
                e.subject,
                ", ".join(f"{k}={v}" for k, v in sorted(e.body.items())),
            )
            for e in entries
        ]
        print(table(["seq", "time (UTC)", "by", "action", "subject", "content"], rows))
        print(
            f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}; "
            "`onceonly ledger verify` checks the chain"
        )

    return await _run(args, body)


def read_proposal(path: Path) -> tuple[str, AgreementTerms]:
    """The agreement id and terms of a proposal file; ``ValueError`` naming what is wrong."""
    from onceonly.broker.agreements import parse_agreement  # (the database layer: only when needed)

    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    entry = data.get("agreement")
    if not isinstance(entry, dict) or set(data) != {"agreement"}:
        raise ValueError(f"{path}: write the proposal as one [agreement] table")
    where = f"{path}: [agreement]"
    agreement_id = entry.get("id")
    if not isinstance(agreement_id, str) or not agreement_id.strip():
        raise ValueError(f"{where}: 'id' is required")
    terms = {k: v for k, v in entry.items() if k not in ("unit", "accountable")}
    a = parse_agreement(agreement_id, terms, where, None)
    texts = {}
    for name in ("unit", "accountable"):
        value = entry.get(name, "")
        if not isinstance(value, str):
            raise ValueError(f"{where}: {name!r} must be a string")
        texts[name] = value
    return agreement_id, AgreementTerms(
        organization_id=a.organization_id,
        unit=texts["unit"],
        accountable=texts["accountable"],
        procedure_codes=tuple(sorted(a.procedure_codes)),
        certificate_type_ids=tuple(sorted(a.certificate_type_ids)),
        legal_bases=tuple(sorted(k.value for k in a.legal_bases)),
        laws=tuple(sorted(a.legal_references)),
        valid_from=a.valid_from,
        valid_until=a.valid_until,
        consent_required=a.consent_required,
        officer_token_required=a.officer_token_required,
        officer_document_required=a.officer_document_required,
        description=a.description,
        disclosure=a.disclosure.value,
        disclosure_until=a.disclosure_until,
        disclosure_law=a.disclosure_law,
        master_agreement_id=a.master_agreement_id,
        data_protection_officer=a.data_protection_officer,
    )


def _print_agreements(views: list[AgreementView]) -> None:
    rows = []
    for v in views:
        notes = [f"waiting for {', '.join(v.waiting_for)}"] if v.waiting_for else []
        notes += [f"endorsed by {v.endorsed_by}"] if v.endorsed_by and not v.waiting_for else []
        notes += [f"disclosure {v.disclosure}"] if v.disclosure != "IMMEDIATE" else []
        notes += [f"released {v.disclosure_released}"] if v.disclosure_released else []
        notes += [f"veto by {p}: {r}" for p, r in v.vetoes]
        notes += [f"suspended {v.suspended}"] if v.suspended else []
        notes += [v.note] if v.note else []
        rows.append(
            (
                v.agreement_id,
                v.version,
                v.state,
                v.organization_id,
                " ".join(v.procedure_codes),
                f"{v.master_agreement_id} v{v.master_version}" if v.master_agreement_id else "-",
                ", ".join(
                    [
                        *v.consulted,
                        *([f"DPO: {v.data_protection_officer}"] if v.data_protection_officer else []),
                    ]
                ),
                "; ".join(notes) or "-",
            )
        )
    print(
        table(
            ["agreement", "version", "state", "consumer", "procedures", "master", "consulted", "notes"], rows
        )
    )


async def cmd_import(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: {args.file}: cannot read: {exc}", file=sys.stderr)
        return EXIT_INVALID

    async def body(client: GovernanceClient) -> None:
        changes, entries = await client.import_file(text, str(args.file), dry_run=args.dry_run)
        if args.json:
            print(
                dump_json({"changes": [asdict(c) for c in changes], "entries": [asdict(e) for e in entries]})
            )
            return
        rows = [(c.what, c.action, c.subject, c.detail) for c in changes]
        print(table(["what", "change", "subject", "detail"], rows) if rows else "nothing to change")
        if args.dry_run:
            print(f"dry run: {len(changes)} change(s) would be made; nothing was recorded")
        elif entries:
            print(
                f"{len(changes)} change(s) recorded: "
                f"governance log entries {entries[0].seq}..{entries[-1].seq}"
            )

    return await _run(args, body)


async def cmd_status(args: argparse.Namespace) -> int:
    complete = False

    async def body(client: GovernanceClient) -> None:
        nonlocal complete
        org, items, complete = await client.joining_status(args.org)
        if args.json:
            print(
                dump_json(
                    {
                        "organisation": asdict(org),
                        "items": [{"name": n, "done": d, "detail": t} for n, d, t in items],
                        "complete": complete,
                    }
                )
            )
            return
        print(f"{org.name} ({org.id}, {org.kind})")
        print(table(["", "item", "detail"], [("done" if d else "TO DO", n, t) for n, d, t in items]))
        print("ready: every item is done" if complete else "not ready yet")

    code = await _run(args, body)
    return code if code != EXIT_OK or complete else EXIT_FAILED


async def cmd_agreements(args: argparse.Namespace) -> int:
    async def body(client: GovernanceClient) -> None:
        views = await client.agreements(args.id or "")
        if args.json:
            print(dump_json([asdict(v) for v in views]))
        else:
            _print_agreements(views)

    return await _run(args, body)


def _print_masters(masters: list[MasterAgreement]) -> None:
    rows = []
    for m in masters:
        quotas = ", ".join(
            f"{n}/{unit}" for n, unit in ((m.quota_per_minute, "min"), (m.quota_per_day, "day")) if n
        )
        rows.append(
            (
                m.id,
                m.version,
                m.title,
                " ".join(m.procedure_codes) or "any",
                ", ".join(m.certificate_type_ids),
                "/".join(m.legal_bases),
                ", ".join(m.disclosures),
                quotas or "-",
                f"{m.retention_days} d" if m.retention_days else "-",
                m.endorsed_by or "-",
            )
        )
    print(
        table(
            [
                "master agreement",
                "version",
                "title",
                "procedures",
                "certificate types",
                "bases",
                "disclosures",
                "quotas",
                "retention",
                "endorsed by",
            ],
            rows,
        )
    )


async def cmd_masters(args: argparse.Namespace) -> int:
    async def body(client: GovernanceClient) -> None:
        found = await client.masters(args.id or "")
        if args.json:
            print(dump_json([asdict(m) for m in found]))
        else:
            _print_masters(found)

    return await _run(args, body)


async def cmd_propose(args: argparse.Namespace) -> int:
    async def body(client: GovernanceClient) -> None:
        agreement_id, terms = read_proposal(args.file)
        view, entry = await client.propose_agreement(agreement_id, terms)
        if args.json:
            print(dump_json({"agreement": asdict(view), "entry": asdict(entry)}))
            return
        _print_agreements([view])
        print(f"proposed; governance log entry {entry.seq}; waiting for {', '.join(view.waiting_for)}")

    return await _run(args, body)


async def cmd_act(args: argparse.Namespace) -> int:
    async def body(client: GovernanceClient) -> None:
        view, entry = await client.act_on_agreement(
            args.agreement, args.action, reason=args.reason or "", version=args.version
        )
        if args.json:
            print(dump_json({"agreement": asdict(view), "entry": asdict(entry)}))
            return
        _print_agreements([view])
        print(f"{entry.action}; governance log entry {entry.seq}")

    return await _run(args, body)


def add_commands(sub: Any) -> argparse.ArgumentParser:
    """Register ``onceonly governance …``."""
    parent = client_command(sub, "governance", "member organisations and the governance log")
    commands = parent.add_subparsers(
        dest="governance_command",
        required=True,
        metavar="{orgs,register,log,import,status,masters,agreements,propose,approve,veto,lift-veto,suspend,"
        "resume,revoke,endorse,release-disclosure}",
    )

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help_text, description=help_text)
        inherit_options(p, parent)
        return p

    command("orgs", "list the member organisations").set_defaults(handler=cmd_orgs)
    register = command("register", "register a member organisation (the platform operator only)")
    register.add_argument("code", help="the organisation's code (its certificates' O)")
    register.add_argument("--name", required=True, help="its name")
    register.add_argument("--kind", required=True, type=str.upper, choices=KINDS, help="what it is")
    register.add_argument("--contact", help="who answers for it (e-mail, address)")
    register.set_defaults(handler=cmd_register)
    log = command("log", "the governance log: who changed what, oldest first")
    log.add_argument("--after", type=int, default=0, help="entries after this position")
    log.set_defaults(handler=cmd_log)
    importing = command(
        "import", "make the recorded governance match a file: the differences, recorded (the operator only)"
    )
    importing.add_argument(
        "file", type=Path, help="organisations, master agreements, agreements and vetoes, as in the seed file"
    )
    importing.add_argument("--dry-run", action="store_true", help="show the changes; record nothing")
    importing.set_defaults(handler=cmd_import)
    status = command("status", "an organisation's joining checklist, checked against what is recorded")
    status.add_argument("org", help="the organisation's code")
    status.set_defaults(handler=cmd_status)
    masters = command("masters", "every version of every master agreement, with its clauses")
    masters.add_argument("--id", help="only this master agreement")
    masters.set_defaults(handler=cmd_masters)
    agreements = command("agreements", "every version of every agreement, with its state")
    agreements.add_argument("--id", help="only this agreement")
    agreements.set_defaults(handler=cmd_agreements)
    propose = command("propose", "propose an agreement, or its next version (a consumer's administrators)")
    propose.add_argument("file", type=Path, help="a TOML file with one [agreement] table")
    propose.set_defaults(handler=cmd_propose)
    for action in ACTIONS:
        name = action.lower().replace("_", "-")
        p = command(name, _ACT_HELP[action])
        p.add_argument("agreement", help="the agreement id")
        p.add_argument("--version", type=int, default=0, help="the version (default: pending, else in force)")
        p.add_argument("--reason", help="why (required to veto, suspend, revoke or release a disclosure)")
        p.set_defaults(handler=cmd_act, action=action)
    return parent


_ACT_HELP = {
    "APPROVE": "approve a proposed agreement (a provider concerned)",
    "VETO": "veto a proposal, or an agreement in force for your data (a provider concerned)",
    "LIFT_VETO": "lift your veto (the provider that vetoed)",
    "SUSPEND": "suspend an agreement in force, at once (oversight)",
    "RESUME": "resume a suspended agreement (oversight)",
    "REVOKE": "revoke an agreement (its consumer's administrators, or the operator)",
    "ENDORSE": "endorse a proposed agreement (the governing body its master agreement names)",
    "RELEASE_DISCLOSURE": "let residents see, from now on, accesses under a DEFERRED disclosure "
    "(oversight, or the consumer's administrators)",
}
