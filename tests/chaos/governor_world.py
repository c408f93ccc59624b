"""The governor as the fault tests run it: its own process, its settings, and waiting for
it to have committed the whole portfolio topic (tests/chaos/test_governor_*.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException

from agents.governor.audit import AuditReport, audit_decisions
from agents.governor.io import (
    LoggedDecision,
    committed_offset,
    end_offset,
    read_commands,
    read_decisions,
)
from agents.governor.model import SlotRequest
from quantum.app.settings import Settings
from quantum.kafka_util import is_settling
from quantum.polling import wait_until

# A restarted broker: what the kit counts as settling (`is_settling`: a coordinator loading
# or moving, a leader being elected), plus the transport failing while it is away. The
# Python client does not flag these retriable when it raises them from `committed()`.
_BROKER_AWAY = {KafkaError._TRANSPORT, KafkaError._TIMED_OUT}
REPO = Path(__file__).resolve().parents[2]
GOVERNOR_RUN = ["-m", "quantum", "governor", "run", "--instance"]

GOVERNOR_ENV = {
    "QT_GOVERNOR__MAX_OPEN_POSITIONS": "10",
    "QT_GOVERNOR__ACTIVE_SLOTS_BASE": "8",
    "QT_GOVERNOR__ACTIVE_SLOTS_TREND_STRONG": "10",
    "QT_GOVERNOR__ACTIVE_SLOTS_CHOP": "3",
    # Longer than a restart's backlog (a fill is stamped when the responder reads the
    # grant, which can be seconds after the request under CI load): with 5 s, most grants
    # made from a backlog expired before their fill and no book ever filled with open
    # positions, so no rotation happened (CI, 2026-11-25). Expiries still occur: ~5 % of
    # grants are never answered, and the final clock expires whatever is left.
    "QT_GOVERNOR__RESERVATION_TTL_MS": "30000",
    "QT_GOVERNOR__ROTATION_TIMEOUT_MS": "30000",
    "QT_GOVERNOR__SYMBOL_COOLDOWN_MS": "2000",
    "QT_GOVERNOR_SHELL__COMMANDS_PER_TRANSACTION": "20",
    "QT_GOVERNOR_SHELL__SNAPSHOT_EVERY": "500",
}


def governor_env(settings: Settings, **more: str) -> dict[str, str]:
    return settings.child_env(PYTHONPATH=str(REPO), **{**GOVERNOR_ENV, **more})


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def spawn_governor(instance: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    return spawn([*GOVERNOR_RUN, instance], env, log)


def wait_caught_up(settings: Settings, timeout_s: float = 120.0) -> None:
    """Poll until the governor's committed offset reaches the portfolio's end (a retriable
    error, such as NOT_COORDINATOR just after a broker restart, counts as not yet)."""

    def caught_up() -> bool:
        try:
            return committed_offset(settings) >= end_offset(settings)
        except KafkaException as exc:
            if not (is_settling(exc) or exc.args[0].code() in _BROKER_AWAY):
                raise
            return False

    try:
        wait_until(
            caught_up,
            timeout_s,
            "the governor to catch up",
            poll_s=0.2,
        )
    except TimeoutError as exc:
        raise AssertionError(
            f"{exc}: committed {committed_offset(settings)} < end {end_offset(settings)}"
        ) from exc


def audit_history(
    settings: Settings,
) -> tuple[AuditReport, list[LoggedDecision], list[SlotRequest], list[int]]:
    """Read the committed portfolio and decisions logs back and audit them: (report, the
    decisions, the requests, the offsets of undecodable commands)."""
    commands, poison = read_commands(settings)
    requests = [c for _, c in commands if isinstance(c, SlotRequest)]
    logged = read_decisions(settings)
    report = audit_decisions(((d.offset, d.decision) for d in logged), requests)
    return report, logged, requests, poison
