"""The governor's own verbs: `quantum governor run` and `quantum audit portfolio`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict

from agents.governor.config import GovernorSettings


def add_commands(sub: argparse._SubParsersAction) -> None:
    gov = sub.add_parser("governor", help="the exactly-once portfolio governor")
    verbs = gov.add_subparsers(dest="verb", metavar="VERB", required=True)
    run = verbs.add_parser("run", help="decide slot commands until stopped (SIGTERM/SIGINT)")
    run.add_argument("--instance", default="governor", help="name in logs")
    run.set_defaults(func=governor_run)

    parser = sub.add_parser("audit", help="re-read committed logs and check invariants")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    portfolio = verbs.add_parser(
        "portfolio",
        help="open + reserved <= limit at every offset; one final decision per request",
    )
    portfolio.add_argument("--json", action="store_true", help="machine-readable report")
    portfolio.set_defaults(func=_portfolio)


def governor_run(args: argparse.Namespace, settings: GovernorSettings) -> int:
    """Run the governor in this thread until SIGTERM/SIGINT; exit 3 when fenced."""
    from agents.governor.shell import EXIT_FENCED, GovernorFenced, run

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stats = run(settings, stop.is_set, instance=args.instance)
    except GovernorFenced as exc:
        print(f"quantum: {exc}", file=sys.stderr)
        return EXIT_FENCED
    print(
        f"{args.instance}: {stats.commands} commands, {stats.decisions} decisions, "
        f"{stats.dead_letters} dead letters, {stats.transactions} transactions"
    )
    return 0


def _portfolio(args: argparse.Namespace, settings: GovernorSettings) -> int:
    from agents.governor.io import audit_committed_log

    report, _, poison = audit_committed_log(settings)
    if args.json:
        print(json.dumps(asdict(report), default=str, indent=2))
    else:
        print(report.render())
        if poison:
            print(f"{len(poison)} portfolio records could not be decoded (see portfolio.dlq)")
    return 0 if report.ok else 1
