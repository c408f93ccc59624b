"""`quantum topology apply | show`: the declared topics joined with the registered agents."""

from __future__ import annotations

import argparse

from agents.registry import REGISTRY
from quantum.config import RuntimeSettings
from topologies.apply import apply_topology, render_graph, render_mermaid


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("topology", help="declare, create and check topics")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    apply = verbs.add_parser("apply", help="create missing topics, report drift (exit 1 on error)")
    apply.add_argument(
        "--fix-configs",
        action="store_true",
        help="also set cleanup policy and retention where they drifted (never partitions)",
    )
    apply.set_defaults(func=_apply)

    show = verbs.add_parser("show", help="print the agent/topic graph")
    show.add_argument("--mermaid", action="store_true", help="print a Mermaid flowchart")
    show.set_defaults(func=_show)


def _apply(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    report = apply_topology(settings, fix_configs=args.fix_configs)
    print(report.render())
    return 0 if report.ok else 1


def _show(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    agents = tuple(REGISTRY)
    print(render_mermaid(agents) if args.mermaid else render_graph(agents))
    return 0
