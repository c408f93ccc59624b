"""`quantum worker --agents a,b` and `quantum governor run`."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from quantum.cli import CliError
from quantum.config import Settings

log = logging.getLogger(__name__)

# Faust agents by name: module with `register(ctx)`.
FAUST_AGENTS = {
    "passthrough": "agents.passthrough.agent",
    "clock": "agents.clock.agent",
}
# The governor is a transactional loop, not a Faust agent; `worker` can host it in a thread.
GOVERNOR = "governor"


def add_commands(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser("worker", help="run a set of agents in one worker process")
    worker.add_argument(
        "--agents",
        required=True,
        help=f"comma-separated, of: {', '.join([*FAUST_AGENTS, GOVERNOR])}",
    )
    worker.set_defaults(func=_worker)

    gov = sub.add_parser("governor", help="the exactly-once portfolio governor")
    verbs = gov.add_subparsers(dest="verb", metavar="VERB", required=True)
    run = verbs.add_parser("run", help="decide slot commands until stopped (SIGTERM/SIGINT)")
    run.add_argument("--instance", default="governor", help="name in logs")
    run.set_defaults(func=_governor_run)


def parse_agents(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAUST_AGENTS and n != GOVERNOR]
    if unknown or not names:
        known = ", ".join([*FAUST_AGENTS, GOVERNOR])
        raise CliError(f"unknown agent(s) {', '.join(unknown) or '(none given)'}; known: {known}")
    return names


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from faust.worker import Worker

    from agents.runtime import AgentContext, create_app
    from quantum.serde import AvroSerde

    names = parse_agents(args.agents)
    app = create_app(settings)
    serde = AvroSerde.from_settings(settings)
    for name in names:
        if name == GOVERNOR:
            continue
        module = importlib.import_module(FAUST_AGENTS[name])
        module.register(AgentContext(app=app, settings=settings, serde=serde, name=name))
    if GOVERNOR in names:
        _start_governor_thread(settings)
    if not set(names) - {GOVERNOR}:
        return _governor_run(argparse.Namespace(instance="governor"), settings)
    Worker(app, loglevel="INFO", override_logging=False).execute_from_commandline()
    return 0


def _start_governor_thread(settings: Settings) -> None:
    from agents.governor.shell import GovernorFenced, GovernorShell

    def run() -> None:
        shell = GovernorShell(settings)
        try:
            shell.run()
        except GovernorFenced as exc:
            log.error("%s", exc)
        finally:
            shell.close()

    threading.Thread(target=run, name="governor", daemon=True).start()


def _governor_run(args: argparse.Namespace, settings: Settings) -> int:
    from agents.governor.shell import EXIT_FENCED, GovernorFenced, GovernorShell

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    shell = GovernorShell(settings, instance=args.instance)
    try:
        stats = shell.run(stop.is_set)
    except GovernorFenced as exc:
        print(f"quantum: {exc}", file=sys.stderr)
        return EXIT_FENCED
    finally:
        shell.close()
    print(
        f"{args.instance}: {stats.commands} commands, {stats.decisions} decisions, "
        f"{stats.dead_letters} dead letters, {stats.transactions} transactions"
    )
    return 0
