"""`quantum worker --agents a,b`: run registered agents in one worker process.

Faust agents share one Faust app; a transactional agent (the governor) runs its own
loop in a thread beside them, or in the main thread when it is the only kind asked for.
Names, help and validation come from the registry (agents/registry.py).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from agents.registry import REGISTRY, UnknownAgent
from agents.spec import AgentSpec
from quantum.errors import CliError

log = logging.getLogger(__name__)

APP_ID = "quantum-trader"


def add_commands(sub: argparse._SubParsersAction) -> None:
    listing = "\n".join(
        f"  {spec.name:<12} [{spec.guarantee_text}] {spec.doc}" for spec in REGISTRY
    )
    worker = sub.add_parser(
        "worker",
        help="run a set of agents in one worker process",
        description=f"Run the named agents in one process.\n\nagents:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument(
        "--agents",
        required=True,
        help=f"comma-separated, of: {', '.join(REGISTRY.names())}",
    )
    worker.add_argument(
        "--group",
        default=APP_ID,
        help="Faust app id (the consumer group, after the topic prefix); workers that run "
        f"different agents side by side need different ones (default {APP_ID})",
    )
    worker.add_argument(
        "--supervise",
        action="store_true",
        help="run the worker as a child and restart it when it exits with an error or "
        "stops committing while it has lag (settings: supervisor.*, docs/operations.md)",
    )
    worker.set_defaults(func=_worker)


def parse_agents(csv: str) -> list[AgentSpec]:
    """The registered agents named in `csv`; CliError naming the known ones otherwise."""
    try:
        return REGISTRY.select(csv)
    except UnknownAgent as exc:
        raise CliError(str(exc)) from exc


def _worker(args: argparse.Namespace, settings: Any) -> int:
    specs = parse_agents(args.agents)
    if args.supervise:
        from quantum.app.supervisor import supervise

        child = ["--topic-prefix", settings.kafka.topic_prefix, "worker"]
        child += ["--agents", args.agents, "--group", args.group]
        return supervise(child, settings, specs, args.group)
    faust_specs = [s for s in specs if s.kind == "faust"]
    loops = [s for s in specs if s.kind == "transactional"]
    if not faust_specs:
        return _run_loops_in_foreground(loops, settings)

    from faust.worker import Worker

    from agents.runtime import AgentContext, create_app
    from quantum.serde import AvroSerde

    app = create_app(settings, app_id=args.group)
    serde = AvroSerde.from_settings(settings)
    for spec in faust_specs:
        ctx = AgentContext(
            app=app,
            settings=settings,
            serde=serde,
            name=spec.name,
            config=spec.own_config(settings),
        )
        spec.load_shell()(ctx)
    for spec in loops:
        _start_loop_thread(spec, settings)
    Worker(app, loglevel="INFO", override_logging=False).execute_from_commandline()
    return 0


def _start_loop_thread(spec: AgentSpec, settings: Any) -> None:
    """A transactional agent beside the Faust agents; it lives as long as the process."""
    run = spec.load_shell()

    def target() -> None:
        try:
            run(settings, lambda: False, spec.name)
        except Exception:
            log.exception("%s stopped", spec.name)

    threading.Thread(target=target, name=spec.name, daemon=True).start()


def _run_loops_in_foreground(specs: list[AgentSpec], settings: Any) -> int:
    """Only transactional agents: run them until SIGTERM/SIGINT, the first in this thread."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    failed: list[BaseException] = []

    def run_one(spec: AgentSpec) -> None:
        try:
            spec.load_shell()(settings, stop.is_set, spec.name)
        except BaseException as exc:
            log.error("%s stopped: %s", spec.name, exc)
            failed.append(exc)
            stop.set()

    threads = [threading.Thread(target=run_one, args=(s,), name=s.name) for s in specs[1:]]
    for thread in threads:
        thread.start()
    run_one(specs[0])
    stop.set()
    for thread in threads:
        thread.join()
    return 3 if failed else 0
