"""`quantum train`: its arguments and entry points, apart from the training code.

Every `quantum` command line builds all subcommands' parsers; the training module imports
torch (about 2 s), so it is imported only when `quantum train` runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.ai_engine.config import AIEngineConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        nargs="+",
        type=Path,
        help="kline files: Binance archives (.zip/.csv) or plain CSV",
    )
    parser.add_argument("--sample", action="store_true", help="the bundled sample (the default)")
    parser.add_argument("--out", type=Path, help="bundle directory (default: weights_path)")
    parser.add_argument("--seed", type=int, help="seed (default: train.seed)")
    parser.add_argument("--epochs", type=int, help="epochs (default: train.epochs)")
    parser.add_argument("--horizon", type=int, help="label horizon in bars (default: 15)")
    parser.add_argument(
        "--calibration",
        choices=("isotonic", "platt", "none"),
        help="calibrator (default: isotonic)",
    )
    parser.add_argument("--json", action="store_true", help="print the metadata as JSON")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`quantum train` for quantum/cli.py's COMMAND_MODULES."""
    parser = sub.add_parser("train", help="train the AI engine's models on replayed klines")
    add_arguments(parser)

    def handler(args: argparse.Namespace, settings: Any) -> int:
        from agents.ai_engine.train import run

        # The app's Settings composes the engine config once it has an `ai_engine` section.
        return run(args, getattr(settings, "ai_engine", None) or AIEngineConfig())

    parser.set_defaults(func=handler)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m agents.ai_engine.train [--data FILES] [--out DIR] ...`"""
    from agents.ai_engine.train import __doc__ as doc
    from agents.ai_engine.train import run

    parser = argparse.ArgumentParser(prog="quantum train", description=(doc or "").split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv), AIEngineConfig())
