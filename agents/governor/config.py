"""Governor parameters. Defaults are the audited system's values, so behaviour is comparable."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from quantum.config import RuntimeSettings

GOVERNOR_DEPLOYMENT_ID = "quantum-governor"  # after the topic prefix: transactional.id, group


class GovernorConfig(BaseModel):
    """Limits and timings of the slot governor (all times are event time, milliseconds).

    max_open_positions: hard cap; open + reserved never exceeds it (audit: MAX_OPEN_POSITIONS=10).
    active_slots_base / _trend_strong / _chop: regime-dependent soft limit for new grants
        (audit: ACTIVE_SLOTS_BASE=4, TREND_STRONG=6, CHOP=3). Always clipped to the hard cap.
    rotation_threshold: a full book rotates only for a request whose score beats the weakest
        open position's by at least this much (audit: ROTATION_THRESHOLD=0.15).
    rotation_timeout_ms: a request waiting on a rotate-out is denied if the release has not
        arrived by then (audit: ROTATION_LOCK_TTL=120 s; here it bounds a wait, not a lock).
    reservation_ttl_ms: a granted slot that never fills is freed after this long.
    symbol_cooldown_ms: after a symbol's slot is released, new entries on it wait this long
        (audit: apply-layer cooldown 180 s).
    memory_horizon_ms: how long handled command ids and ended intents (CLOSED, DENIED,
        EXPIRED, REJECTED) are remembered, counted in event time from when last seen. A
        redelivery within it is recognised; after it, a command id counts as new. 24 h: far
        beyond any producer's retry horizon (a Kafka producer gives up after
        delivery.timeout.ms, 2 min by default), and it bounds the state and the snapshot.
    max_event_skew_ms: a command stamped more than this ahead of its Kafka record timestamp
        is dead-lettered (EVENT_TIME_SKEW) and never moves the clock: one producer writing
        microseconds would otherwise push `now` centuries ahead and stop every TTL. 5 min
        covers ordinary clock drift between hosts.
    """

    model_config = ConfigDict(frozen=True)

    max_open_positions: int = Field(10, ge=1)
    active_slots_base: int = Field(4, ge=0)
    active_slots_trend_strong: int = Field(6, ge=0)
    active_slots_chop: int = Field(3, ge=0)
    rotation_threshold: float = Field(0.15, ge=0.0)
    rotation_timeout_ms: int = Field(120_000, ge=0)
    reservation_ttl_ms: int = Field(120_000, ge=0)
    symbol_cooldown_ms: int = Field(180_000, ge=0)
    memory_horizon_ms: int = Field(86_400_000, ge=0)
    max_event_skew_ms: int = Field(300_000, ge=0)


class GovernorShellSettings(BaseModel):
    """How the exactly-once governor loop batches and persists.

    commands_per_transaction: upper bound of commands decided in one Kafka transaction
        (default 100); one commit costs ~10-20 ms here, so batching is where throughput
        comes from.
    max_batch_wait_ms: how long the loop waits to fill a batch before committing what it
        has (default 5).
    snapshot_every: commands between state snapshots, at least (default 1000).
    snapshot_every_per_entry: and at least this many commands per entry the snapshot holds
        (remembered intents and handled command ids; default 1.0). A snapshot costs ~3 µs
        per entry (50,000: ~280 ms) and its state grows with the remembering horizon, so a
        fixed interval would make its cost per command grow without bound; this keeps it
        constant. A restart replays at most max(snapshot_every, that) commands. 0: the
        interval is snapshot_every alone.
    gc_freeze_every: every this many commands, freeze the survivors of CPython's young
        collector generations (quantum/gc_freeze.py; default 5000, 0: never). Without it the
        collector's full passes scan the whole remembered state: 40-60 ms pauses at 120,000
        entries, the governor's latency tail.
    commit_hang_s: a transaction's commit (flush, offsets, commit, each retried while
        librdkafka calls its error retriable) that has not returned after this long is taken
        as hung, and the process exits with status 75 for its supervisor to start another
        (default 120). librdkafka can block in send_offsets_to_transaction forever once the
        group coordinator restarted (#5456, #5511).
    transactional_id: fixed per deployment; a second instance with it fences the first.
        None (the default): `<topic prefix>quantum-governor`, so a demo or replay run under
        its own prefix never fences the live governor on the same broker, nor it them.
    group_id: the consumer group whose committed offset marks the decided prefix.
        None (the default): `<topic prefix>quantum-governor`, for the same reason.
    """

    model_config = ConfigDict(frozen=True)

    commands_per_transaction: int = Field(100, ge=1)
    max_batch_wait_ms: int = Field(5, ge=0)
    snapshot_every: int = Field(1000, ge=1)
    snapshot_every_per_entry: float = Field(1.0, ge=0)
    gc_freeze_every: int = Field(5000, ge=0)
    commit_hang_s: float = Field(120.0, gt=0)
    transactional_id: str | None = None
    group_id: str | None = None

    def transactional_id_for(self, topic_prefix: str) -> str:
        return self.transactional_id or f"{topic_prefix}{GOVERNOR_DEPLOYMENT_ID}"

    def group_id_for(self, topic_prefix: str) -> str:
        return self.group_id or f"{topic_prefix}{GOVERNOR_DEPLOYMENT_ID}"


class GovernorSettings(RuntimeSettings, Protocol):
    """What the governor's shell and tools need of the composed settings: the kit's
    runtime plus its two sections (`governor`, `governor_shell`)."""

    @property
    def governor(self) -> GovernorConfig: ...
    @property
    def governor_shell(self) -> GovernorShellSettings: ...
