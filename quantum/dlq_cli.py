"""`quantum dlq list | show | replay`: look at dead letters and send them back."""

from __future__ import annotations

import argparse
import json

from confluent_kafka import Consumer

from quantum.config import RuntimeSettings
from quantum.dlq import DLQ_SUFFIX, read_dead_letters, replay
from quantum.errors import CliError
from quantum.kafka_util import end_offsets


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dlq", help="inspect and replay dead letters")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    ls = verbs.add_parser("list", help="dead-letter topics with counts, or one topic's letters")
    ls.add_argument("topic", nargs="?", help="logical topic or its .dlq (without the run prefix)")
    ls.set_defaults(func=_list)

    show = verbs.add_parser("show", help="one dead letter in full")
    show.add_argument("topic")
    show.add_argument("offset", type=int)
    show.set_defaults(func=_show)

    rp = verbs.add_parser("replay", help="re-inject dead letters into their source topic")
    rp.add_argument("topic")
    group = rp.add_mutually_exclusive_group(required=True)
    group.add_argument("--offset", type=int, action="append", help="a dead letter's offset")
    group.add_argument("--all", action="store_true", help="every dead letter in the topic")
    rp.set_defaults(func=_replay)


def _dlq_name(settings: RuntimeSettings, topic: str) -> str:
    logical = topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX
    return settings.topic(logical)


def _list(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    if args.topic:
        name = _dlq_name(settings, args.topic)
        count = 0
        for letter in _letters(settings, name):
            print(letter.summary())
            count += 1
        print(f"{count} dead letters in {name}")
        return 0
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": "quantum-dlq"})
    try:
        topics = consumer.list_topics(timeout=30).topics
        prefix = settings.kafka.topic_prefix
        for name in sorted(t for t in topics if t.endswith(DLQ_SUFFIX) and t.startswith(prefix)):
            total = sum(end_offsets(settings.kafka.bootstrap, name, 10).values())
            print(f"{name:<50} {total:>8} records")
    finally:
        consumer.close()
    return 0


def _letters(settings: RuntimeSettings, name: str):
    try:
        yield from read_dead_letters(settings, name)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _show(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    name = _dlq_name(settings, args.topic)
    for letter in _letters(settings, name):
        if letter.offset == args.offset:
            shown = dict(letter.value)
            for field in ("key", "value"):
                raw = shown[field]
                shown[field] = None if raw is None else {"hex": raw.hex(), "bytes": len(raw)}
            shown["headers"] = [
                {"key": h["key"], "value": h["value"].hex()} for h in shown["headers"]
            ]
            print(json.dumps(shown, indent=2, default=str))
            return 0
    raise CliError(f"no dead letter at offset {args.offset} in {name}")


def _replay(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    name = _dlq_name(settings, args.topic)
    try:
        done = replay(settings, name, offsets=None if args.all else set(args.offset))
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    for letter in done:
        print(f"replayed {letter.summary()}")
    print(f"{len(done)} dead letters re-injected")
    return 0 if done else 1
