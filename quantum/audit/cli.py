"""`quantum audit portfolio`: prove from the committed logs that the slot invariant held."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from agents.governor.io import read_commands, read_decisions
from agents.governor.model import SlotRequest
from quantum.audit.portfolio import audit_decisions
from quantum.config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="re-read committed logs and check invariants")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    portfolio = verbs.add_parser(
        "portfolio",
        help="open + reserved <= limit at every offset; one final decision per request",
    )
    portfolio.add_argument("--json", action="store_true", help="machine-readable report")
    portfolio.set_defaults(func=_portfolio)


def _portfolio(args: argparse.Namespace, settings: Settings) -> int:
    commands, poison = read_commands(settings)
    requests = [cmd for _, cmd in commands if isinstance(cmd, SlotRequest)]
    logged = read_decisions(settings)
    report = audit_decisions(((d.offset, d.decision) for d in logged), requests)
    if args.json:
        print(json.dumps(asdict(report), default=str, indent=2))
    else:
        print(report.render())
        if poison:
            print(f"{len(poison)} portfolio records could not be decoded (see portfolio.dlq)")
    return 0 if report.ok else 1
