"""`quantum`: one command with verb subcommands; `quantum --help` is the manual.

Each command group lives beside its concern and exposes `add_commands(subparsers)`,
which adds its parsers with `set_defaults(func=handler)`; a handler takes
`(args, settings)` and returns the exit code. An agent's own verbs come from its
`AgentSpec.commands` (agents/registry.py), after the platform's.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from agents.registry import REGISTRY
from quantum.app.settings import Settings
from quantum.errors import CliError

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES = (
    "infra.cli",
    "quantum.app.topology_cli",
    "topologies.schema_cli",
    "quantum.dlq_cli",
    "quantum.app.worker",
    "quantum.marketdata.cli",
    "agents.harvest.payoff_cli",
    *(spec.commands for spec in REGISTRY if spec.commands),
    "quantum.app.backtest.cli",
    "quantum.app.replay",
    "quantum.app.demo",
)

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantum",
        description="Quantum Trader: a crypto-futures platform on Kafka.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--topic-prefix",
        default=None,
        help="prefix for every topic of this run (default: QT_KAFKA__TOPIC_PREFIX or none)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per registry call otherwise
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    settings = Settings()
    if args.topic_prefix is not None:
        settings = settings.with_prefix(args.topic_prefix)
    try:
        return int(args.func(args, settings) or 0)
    except CliError as exc:
        print(f"quantum: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `quantum ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
