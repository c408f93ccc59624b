"""`quantum schemas register|check|diff`: the schema tooling on the command line.

Exit codes: 0 all fine; 1 something is incompatible (check) or was refused (register);
2 a user error (unknown topic, registry unreachable), printed as one line.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from quantum.config import RuntimeSettings
from quantum.errors import CliError, RegistryUnavailable


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schemas",
        help="register, check and diff the Avro schemas of every topic",
        description=(
            "Schemas live in schemas/*.avsc; subjects are <prefix><topic>-value "
            "(topic-name strategy)."
        ),
    )
    verbs = parser.add_subparsers(dest="schemas_command", metavar="VERB", required=True)
    specs = (
        ("register", _register, "register every schema; incompatible ones are refused"),
        ("check", _check, "test the working copy against the latest registered versions"),
        ("diff", _diff, "field-level changes between the registry and the working copy"),
    )
    for name, handler, help_text in specs:
        p = verbs.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--topic",
            action="append",
            default=None,
            metavar="TOPIC",
            help="only this logical topic (repeatable; default: every topic with a schema)",
        )
        p.set_defaults(func=handler)


def _run(fn: Any, args: argparse.Namespace, settings: RuntimeSettings) -> Any:
    if not getattr(args, "verbose", False):
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        return fn(settings, topics=args.topic)
    except KeyError as exc:
        raise CliError(str(exc.args[0]) if exc.args else str(exc)) from exc
    except RegistryUnavailable as exc:
        raise CliError(f"{exc} (registry {settings.registry.url})") from exc


def _register(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from topologies import schema_tool

    results = _run(schema_tool.register, args, settings)
    refused = 0
    for r in results:
        if r.status == "registered":
            level = r.compatibility or "registry default"
            version = f" v{r.version}" if r.version is not None else ""
            print(f"{r.subject:<50} id {r.schema_id}{version}  [{level}]  ({r.schema_file})")
        else:
            refused += 1
            print(f"{r.subject:<50} REFUSED  ({r.schema_file})\n    {r.message}")
    print(f"{len(results) - refused} registered, {refused} refused")
    return 1 if refused else 0


def _check(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from topologies import schema_tool

    results = _run(schema_tool.check, args, settings)
    bad = 0
    for r in results:
        version = f" (vs v{r.latest_version})" if r.latest_version is not None else ""
        print(f"{r.subject:<50} {r.status}{version}  ({r.schema_file})")
        if r.status == "INCOMPATIBLE":
            bad += 1
            print(f"    {r.message}")
    print(
        f"{len(results)} subjects, {bad} incompatible "
        f"(compatibility {settings.registry.compatibility} as enforced by the registry)"
    )
    return 1 if bad else 0


def _diff(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from topologies import schema_tool

    results = _run(schema_tool.diff, args, settings)
    for r in results:
        if r.status == "new":
            print(f"{r.subject}: new (not registered yet)")
        elif r.status == "same":
            print(f"{r.subject}: same as v{r.latest_version}")
        else:
            print(f"{r.subject}: {len(r.changes)} change(s) since v{r.latest_version}")
            for c in r.changes:
                print(f"    {c}")
    return 0
