"""`quantum infra up | down | status`: the local broker and registry, no Docker needed."""

from __future__ import annotations

import argparse
import time

from infra import local
from quantum.config import KitSettings
from quantum.errors import CliError


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("infra", help="run a local Kafka broker and schema registry")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    up = verbs.add_parser("up", help="start (or reuse) the broker and registry; wait until ready")
    up.add_argument(
        "--no-registry",
        action="store_true",
        help="start only the broker (default: QT_INFRA__START_REGISTRY, true)",
    )
    up.set_defaults(func=_up)

    down = verbs.add_parser("down", help="stop what `up` started")
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete the broker data and logs (the downloaded jars are kept)",
    )
    down.set_defaults(func=_down)

    status = verbs.add_parser("status", help="report what runs (exit 0 healthy, 1 not)")
    status.set_defaults(func=_status)


def _up(args: argparse.Namespace, settings: KitSettings) -> int:
    started = time.monotonic()
    try:
        endpoints = local.up(settings.infra, with_registry=False if args.no_registry else None)
    except local.InfraError as exc:
        raise CliError(str(exc)) from exc
    print(f"bootstrap={endpoints.bootstrap}")
    print(f"registry={endpoints.registry_url or '(not started)'}")
    print(f"ready in {time.monotonic() - started:.1f}s (state dir {settings.infra.state_dir})")
    return 0


def _down(args: argparse.Namespace, settings: KitSettings) -> int:
    started = time.monotonic()
    try:
        local.down(settings.infra, purge=args.purge)
    except local.InfraError as exc:
        raise CliError(str(exc)) from exc
    purged = ", data purged" if args.purge else ""
    print(f"stopped in {time.monotonic() - started:.1f}s{purged}")
    return 0


def _status(args: argparse.Namespace, settings: KitSettings) -> int:
    st = local.status(settings.infra)
    print(("healthy" if st.healthy else "not running") + "\n" + st.detail)
    return 0 if st.healthy else 1
