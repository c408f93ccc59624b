"""Market regime from the symbols' trend strength and volatility: TREND_STRONG, BASE or CHOP.

Each symbol's bar is classified (ADX high: trend; ADX low, or volatile without a trend:
chop; else base). The market is judged once per bucket of event time by the share of
symbols in each class, with a hysteresis band (enter at 60 %, leave below 40 %) and a
confirmation run (the same new verdict for 15 buckets). Only a change of regime emits a
governor `SetRegime`, named by its regime and event time, so a replay or a restart sends
the same command id and the governor applies it once.

Symbols arrive on different partitions in any interleaving, so a bucket is judged only
when every counted symbol has moved past it (a low watermark over the symbols; with
`symbols` configured, also over those not seen yet): the verdict of a bucket is then a
function of the per-symbol sequences, not of their arrival order, as long as no symbol
lags the others by more than `stale_buckets`. A symbol silent for longer stops counting
and stops holding the watermark back. Pure: no I/O, no clock; event time comes with the
observations.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from agents.governor.model import Regime, SetRegime
from agents.regime.config import RegimeConfig
from agents.regime.model import RegimeObservation
from quantum.errors import InvalidRecord

SNAPSHOT_VERSION = 1


def classify(obs: RegimeObservation, cfg: RegimeConfig) -> Regime:
    """One symbol's regime at one bar."""
    if obs.trend_strength >= cfg.trend_adx:
        return Regime.TREND_STRONG
    if obs.trend_strength < cfg.chop_adx or obs.vol_ratio >= cfg.chop_vol_ratio:
        return Regime.CHOP
    return Regime.BASE


class RegimeDetector:
    """Mutable for speed; every output is a function of the per-symbol observation sequences."""

    def __init__(self, config: RegimeConfig) -> None:
        self.config = config
        self.regime = Regime.BASE  # the governor's starting regime
        self.candidate: Regime | None = None
        self.streak = 0
        self.start_bucket: int | None = None  # first bucket seen
        self.next_bucket: int | None = None  # first bucket not yet judged
        self.max_bucket: int | None = None
        self.history: dict[str, deque[tuple[int, Regime]]] = {}

    def observe(self, obs: RegimeObservation) -> list[SetRegime]:
        """Take one observation; the SetRegime commands it completes (usually none)."""
        cfg = self.config
        if cfg.symbols and obs.symbol not in cfg.symbols:
            return []
        for name in ("trend_strength", "vol_ratio"):
            x = getattr(obs, name)
            if not isinstance(x, int | float) or not math.isfinite(x):
                raise InvalidRecord("INVALID_VALUE", f"regime input '{name}' = {x!r} is not finite")
        bucket = obs.event_time_ms // cfg.bucket_ms
        hist = self.history.setdefault(obs.symbol, deque())
        if hist and bucket <= hist[-1][0]:
            return []  # a redelivered or same-bucket bar: the first one counts
        hist.append((bucket, classify(obs, cfg)))
        if self.max_bucket is None or bucket > self.max_bucket:
            self.max_bucket = bucket
        if self.next_bucket is None:
            self.start_bucket = self.next_bucket = bucket
        return self._judge_until(self._watermark())

    def flush(self, event_time_ms: int) -> list[SetRegime]:
        """Judge every bucket that ends at or before `event_time_ms` (end of a replay); no
        further than the last bucket observed, after which nothing new can be known."""
        if self.max_bucket is None:
            return []
        return self._judge_until(min(event_time_ms // self.config.bucket_ms, self.max_bucket + 1))

    # ---- internals ---------------------------------------------------------------------

    def _latest(self, symbol: str) -> int:
        """The symbol's latest bucket; a configured symbol not seen yet has passed nothing."""
        hist = self.history.get(symbol)
        if hist:
            return hist[-1][0]
        assert self.start_bucket is not None
        return self.start_bucket - 1

    def _watermark(self) -> int:
        """The first bucket some symbol that still counts has not passed yet."""
        assert self.max_bucket is not None
        low = self.max_bucket - self.config.stale_buckets
        symbols = set(self.history) | set(self.config.symbols)
        latest = [b for s in symbols if (b := self._latest(s)) >= low]
        return min(latest) if latest else self.max_bucket

    def _judge_until(self, end: int) -> list[SetRegime]:
        out: list[SetRegime] = []
        while self.next_bucket is not None and self.next_bucket < end:
            command = self._judge(self.next_bucket)
            if command is not None:
                out.append(command)
            self.next_bucket += 1
            self._prune(self.next_bucket - 1)
        return out

    def _class_at(self, symbol: str, bucket: int) -> Regime | None:
        """The symbol's class as of `bucket`: its latest observation at or before it, if fresh."""
        low = bucket - self.config.stale_buckets
        found: Regime | None = None
        for b, cls in self.history[symbol]:
            if b > bucket:
                break
            found = cls if b >= low else None
        return found

    def _judge(self, bucket: int) -> SetRegime | None:
        cfg = self.config
        classes = [c for s in self.history if (c := self._class_at(s, bucket)) is not None]
        if len(classes) < cfg.min_symbols:
            return None
        n = len(classes)
        trend = sum(c is Regime.TREND_STRONG for c in classes) / n
        chop = sum(c is Regime.CHOP for c in classes) / n
        if self.regime is Regime.TREND_STRONG and trend >= cfg.exit_share:
            target = Regime.TREND_STRONG
        elif self.regime is Regime.CHOP and chop >= cfg.exit_share:
            target = Regime.CHOP
        elif trend >= cfg.enter_share and trend >= chop:
            target = Regime.TREND_STRONG
        elif chop >= cfg.enter_share:
            target = Regime.CHOP
        else:
            target = Regime.BASE
        if target is self.regime:
            self.candidate, self.streak = None, 0
            return None
        if target is self.candidate:
            self.streak += 1
        else:
            self.candidate, self.streak = target, 1
        if self.streak < cfg.confirm_buckets:
            return None
        self.regime, self.candidate, self.streak = target, None, 0
        at = (bucket + 1) * cfg.bucket_ms  # the end of the bucket that decided it
        return SetRegime(command_id=f"regime:{target.value}:{at}", regime=target, event_time_ms=at)

    def _prune(self, judged: int) -> None:
        """Keep per symbol the latest observation at or before `judged` and every later one."""
        for hist in self.history.values():
            while len(hist) > 1 and hist[1][0] <= judged:
                hist.popleft()

    # ---- persistence -----------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "regime": self.regime.value,
            "candidate": self.candidate.value if self.candidate else None,
            "streak": self.streak,
            "start_bucket": self.start_bucket,
            "next_bucket": self.next_bucket,
            "max_bucket": self.max_bucket,
            "history": {s: [[b, c.value] for b, c in h] for s, h in sorted(self.history.items())},
        }

    @classmethod
    def from_snapshot(cls, config: RegimeConfig, data: Mapping[str, Any]) -> RegimeDetector:
        if data.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"regime snapshot version {data.get('v')!r}")
        det = cls(config)
        det.regime = Regime(data["regime"])
        det.candidate = Regime(data["candidate"]) if data["candidate"] else None
        det.streak = int(data["streak"])
        det.start_bucket = data["start_bucket"]
        det.next_bucket = data["next_bucket"]
        det.max_bucket = data["max_bucket"]
        det.history = {
            s: deque((int(b), Regime(c)) for b, c in h) for s, h in data["history"].items()
        }
        return det
