"""Harvest parameters. Defaults are the audited HarvestBrain's (audit §2.1, §4.1)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, model_validator

AUDIT_LADDER = "0.5:0.25,1.0:0.25,1.5:0.25"


@dataclass(frozen=True, slots=True)
class Rung:
    """At `r` R (profit side: +r, loss side: -r) close `fraction` of the initial quantity."""

    r: Decimal
    fraction: Decimal


@lru_cache(maxsize=64)  # read on every bar (HarvestConfig keeps the text); pure, immutable result
def parse_ladder(text: str) -> tuple[Rung, ...]:
    """`"0.5:0.25,1.0:0.25"` -> rungs; `""` or `"none"` -> no rungs.

    Levels are R multiples > 0, strictly increasing; fractions are of the *initial*
    quantity (the audit's 25 %, 50 %, 75 % closed cumulatively), each in (0, 1], summing
    to at most 1. Raises ValueError with the offending part.
    """
    text = text.strip()
    if text.lower() in ("", "none", "off"):
        return ()
    rungs: list[Rung] = []
    for part in text.split(","):
        r_text, sep, f_text = part.strip().partition(":")
        if not sep:
            raise ValueError(f"ladder step {part!r}: expected R:FRACTION, e.g. 0.5:0.25")
        try:
            r, f = Decimal(r_text.strip()), Decimal(f_text.strip())
        except InvalidOperation as exc:
            raise ValueError(f"ladder step {part!r}: not decimal numbers") from exc
        if not (r.is_finite() and f.is_finite()) or r <= 0 or not 0 < f <= 1:
            raise ValueError(f"ladder step {part!r}: need R > 0 and 0 < fraction <= 1")
        if rungs and r <= rungs[-1].r:
            raise ValueError(f"ladder step {part!r}: R levels must strictly increase")
        rungs.append(Rung(r, f))
    if sum((g.fraction for g in rungs), Decimal(0)) > 1:
        raise ValueError(f"ladder {text!r}: fractions sum to more than 1")
    return tuple(rungs)


def format_ladder(rungs: tuple[Rung, ...]) -> str:
    return ",".join(f"{g.r}:{g.fraction}" for g in rungs) or "none"


class HarvestConfig(BaseModel):
    """The R-multiple harvest of one open position (R = entry-to-stop distance in price).

    enabled: False turns the processor off (no state, no exits), so a plain strategy stays
        comparable with other engines. Default True.
    ladder: profit-side steps "R:FRACTION,..." (audit HARVEST_LADDER="0.5:0.25,1.0:0.25,1.5:0.25":
        close 25 % of the initial quantity at +0.5R, +1R and +1.5R). "none" disables it.
    break_even_r: when the price reaches +this R, the stop moves to entry (audit: 0.5R,
        "Break-Even Move ... ACTIVE", §2.1). None disables the move.
    break_even_offset_r: where the moved stop goes, in R from entry (0 = exactly entry, as
        audited; a small positive value pays the fees). Must be below break_even_r.
    trailing_enabled: trail a stop behind the best price on the remainder. Default True
        (audit: "Trailing Stop: peak - current > 2.0xATR").
    trail_atr_mult: trailing distance in ATRs (audit: 2.0).
    trail_start_r: when the trailing stop starts following the price. None (default) =
        "on the remainder": once the last ladder step has fired (audit §4.1: the last 25 %
        trails), or from the start when there is no ladder. A number = once the best price
        has reached +this R.
    atr_period: Wilder ATR period of the processor's own incremental ATR, used when the
        bars carry no ATR (14, the usual default; the audit does not say).
    stop_enabled: exit everything that is left when the price crosses the initial stop
        (audit: EMERGENCY_SL full close). The moved stops (break-even, trailing) have
        their own switches above.
    default_stop_pct: a position without a stop-loss gets entry -/+ this (audit's exit
        monitor default: 1.5 %) and a StopLossDefaulted warning; never silent.
    symmetric: partial stops on the loss side (the audit's missing half, §4.4: "Losers:
        binary exit"). Default False (the audited behaviour).
    loss_ladder: loss-side steps "R:FRACTION,..." at -R, used when symmetric is on. None =
        the profit ladder mirrored (audit ladder: 25 % at -0.5R, 25 % at -1R, then the stop
        at -1R takes the rest; the step at -1.5R lies beyond the stop and never fires).

    Read by the shell (agents/harvest/agent.py), not the core:
    wait_for_stop: hold a new position that arrives without a stop-loss until its symbol's
        next bar, then apply default_stop_pct with a warning. Default True: the positions
        agent reports the entry fill before execution's protective stop order is
        acknowledged, so nearly every position's first record has no stop-loss yet; without
        the wait each one would be harvested against the default stop and warned about.
        False: the default and the warning at once.
    closed_retention_ms: how long the state of a closed position is kept (so a redelivered
        OPEN record of it cannot start it again), in event time (24 h, like positions'
        dedup horizon).
    """

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    ladder: str = AUDIT_LADDER
    break_even_r: Decimal | None = Field(Decimal("0.5"), gt=0)
    break_even_offset_r: Decimal = Decimal(0)
    trailing_enabled: bool = True
    trail_atr_mult: Decimal = Field(Decimal(2), gt=0)
    trail_start_r: Decimal | None = Field(None, ge=0)
    atr_period: int = Field(14, ge=1)
    stop_enabled: bool = True
    default_stop_pct: Decimal = Field(Decimal("0.015"), gt=0, lt=1)
    symmetric: bool = False
    loss_ladder: str | None = None
    wait_for_stop: bool = True
    closed_retention_ms: int = Field(24 * 60 * 60 * 1000, gt=0)

    @model_validator(mode="after")
    def _check(self) -> HarvestConfig:
        parse_ladder(self.ladder)
        if self.loss_ladder is not None:
            parse_ladder(self.loss_ladder)
        if self.break_even_r is not None and self.break_even_offset_r >= self.break_even_r:
            raise ValueError("break_even_offset_r must be below break_even_r")
        return self

    @property
    def rungs(self) -> tuple[Rung, ...]:
        return parse_ladder(self.ladder)

    @property
    def loss_rungs(self) -> tuple[Rung, ...]:
        """Loss-side steps in force (empty unless symmetric)."""
        if not self.symmetric:
            return ()
        if self.loss_ladder is not None:
            return parse_ladder(self.loss_ladder)
        return self.rungs
