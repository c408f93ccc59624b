"""Payoff analysis of exit policies in R: per-scenario outcome, expectancy, profit factor,
breakeven win rate, and ladders side by side.

The outcome of a price path is not computed by a formula of its own: the path is turned
into closed bars and run through the harvest core (`agents.harvest.core`), the same code
that harvests live positions. So the analysis and the live exits cannot disagree, and
the audit's §4.2 scenario table is reproduced by the ladder rules, not typed in.

Units: a path is a list of waypoints in R from entry (R = the initial stop distance), the
price moving in a straight line between them. A policy's trailing distance is in R too
(the live processor trails at `trail_atr_mult` x ATR; here `trail_r` stands for that
distance). Exits fill at the level that triggered them (paths are continuous, so no
gaps); whatever is still open at the last waypoint is marked there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation

from agents.exits.model import Bar, PositionView, Side
from agents.harvest.config import AUDIT_LADDER, HarvestConfig, format_ladder, parse_ladder
from agents.harvest.core import on_bar, on_position

# A long at this price with R = 1 price unit: waypoints down to -ENTRY R stay positive.
_ENTRY = Decimal(1_000_000)
_MAX_ABS_R = Decimal(100_000)


@dataclass(frozen=True, slots=True)
class Policy:
    """An exit policy in R units, mapped onto a HarvestConfig by `harvest_config()`.

    ladder: profit steps "R:FRACTION,..." or "none". break_even_r: move the stop to entry
    at +this R (None: never). trail_r: trailing distance in R (None: no trailing).
    trail_start_r: None = trail the remainder after the last ladder step (from entry if
    there is no ladder), else from +this R. stop_r: the initial stop at -stop_r R.
    symmetric / loss_ladder: partial stops on the loss side (loss_ladder None = mirrored).
    """

    name: str
    ladder: str = AUDIT_LADDER
    break_even_r: Decimal | None = Decimal("0.5")
    trail_r: Decimal | None = Decimal(1)
    trail_start_r: Decimal | None = None
    stop_r: Decimal = Decimal(1)
    symmetric: bool = False
    loss_ladder: str | None = None

    def harvest_config(self) -> HarvestConfig:
        return HarvestConfig(
            ladder=self.ladder,
            break_even_r=self.break_even_r,
            trailing_enabled=self.trail_r is not None,
            trail_atr_mult=Decimal(1),  # bars carry atr = trail_r, so the distance is exact
            trail_start_r=self.trail_start_r,
            symmetric=self.symmetric,
            loss_ladder=self.loss_ladder,
        )

    def describe(self) -> str:
        cfg = self.harvest_config()
        parts = [f"ladder {format_ladder(cfg.rungs)}"]
        parts.append(f"BE {self.break_even_r}R" if self.break_even_r is not None else "no BE")
        if self.trail_r is None:
            parts.append("no trailing")
        else:
            start = (
                "after the ladder" if self.trail_start_r is None else f"from {self.trail_start_r}R"
            )
            if self.trail_start_r is None and not cfg.rungs:
                start = "from entry"
            parts.append(f"trail {self.trail_r}R {start}")
        if self.symmetric:
            parts.append(f"loss steps {format_ladder(cfg.loss_rungs)}")
        parts.append(f"stop -{self.stop_r}R")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A price path (waypoints in R after entry) and its weight in the mix."""

    name: str
    weight: Decimal
    path: tuple[Decimal, ...]


@dataclass(frozen=True, slots=True)
class Fill:
    """One exit of a simulated trade: `fraction` of the initial quantity at `r` R."""

    step: str  # the exit id's step (tp1, sl1, stop) or "end" (marked at the last waypoint)
    reason: str
    fraction: Decimal
    r: Decimal

    @property
    def contribution(self) -> Decimal:
        return self.fraction * self.r


@dataclass(frozen=True, slots=True)
class Outcome:
    scenario: Scenario
    r: Decimal  # the trade's result in R (sum of the fills' contributions)
    fills: tuple[Fill, ...]


@dataclass(frozen=True, slots=True)
class Stats:
    """Weighted trade statistics in R. Trades at exactly 0R count as neither win nor loss.
    `weight` is the total weight (the number of trades for a trade list); gross profit and
    loss are weighted sums in R.

    profit_factor = gross profit / gross loss (None: no losses). payoff_ratio = average
    win / average loss. breakeven_win_rate = 1 / (1 + payoff_ratio): the share of
    decisive trades that must win for zero expectancy at this payoff ratio; it is the
    payoff ratio, not the profit factor, that belongs in that formula.
    """

    weight: Decimal
    expectancy: Decimal
    win_rate: Decimal
    loss_rate: Decimal
    avg_win: Decimal | None
    avg_loss: Decimal | None  # as a positive number of R
    payoff_ratio: Decimal | None
    profit_factor: Decimal | None
    breakeven_win_rate: Decimal | None
    gross_profit: Decimal
    gross_loss: Decimal


@dataclass(frozen=True, slots=True)
class PolicyReport:
    policy: Policy
    outcomes: tuple[Outcome, ...]
    stats: Stats = field(compare=False)


# ---- simulation -----------------------------------------------------------------------


def simulate(policy: Policy, path: Sequence[Decimal]) -> tuple[Decimal, tuple[Fill, ...]]:
    """Run one long trade along `path` (waypoints in R) through the harvest core."""
    if not path:
        raise ValueError("a path needs at least one waypoint")
    for w in path:
        if not w.is_finite() or abs(w) > _MAX_ABS_R:
            raise ValueError(f"waypoint {w} out of range (|R| <= {_MAX_ABS_R})")
    if policy.stop_r <= 0:
        raise ValueError("stop_r must be > 0")
    cfg = policy.harvest_config()
    position = PositionView(
        intent_id="sim",
        symbol="SIM",
        side=Side.LONG,
        entry_price=_ENTRY,
        quantity=Decimal(1),
        stop_loss=_ENTRY - policy.stop_r,
        opened_at_ms=0,
        updated_at_ms=0,
        risk=Decimal(1),
    )
    state, _ = on_position(cfg, None, position)
    assert state is not None
    atr = policy.trail_r if policy.trail_r is not None else None
    fills: list[Fill] = []
    prev = Decimal(0)
    for k, w in enumerate(path):
        bar = Bar(
            symbol="SIM",
            open_time_ms=2 * k + 1,
            close_time_ms=2 * k + 2,
            open=_ENTRY + prev,
            high=_ENTRY + max(prev, w),
            low=_ENTRY + min(prev, w),
            close=_ENTRY + w,
            atr=atr,
        )
        state, exits = on_bar(cfg, state, bar)
        for e in exits:
            step = e.exit_id.rsplit(":", 1)[1]
            fills.append(Fill(step, e.reason.value, e.quantity, e.reference_price - _ENTRY))
        prev = w
        if state.closed:
            break
    if state.open_qty > 0 and not state.closed:
        fills.append(Fill("end", "OPEN_AT_END", state.open_qty, prev))
    total = sum((f.contribution for f in fills), Decimal(0))
    return total, tuple(fills)


def evaluate(policy: Policy, scenarios: Sequence[Scenario]) -> PolicyReport:
    outcomes = []
    for sc in scenarios:
        r, fills = simulate(policy, sc.path)
        outcomes.append(Outcome(sc, r, fills))
    return PolicyReport(policy, tuple(outcomes), stats((o.scenario.weight, o.r) for o in outcomes))


def stats(trades: Iterable[tuple[Decimal, Decimal]]) -> Stats:
    """Statistics of (weight, R) pairs; weights need not sum to 1."""
    total = wins = losses = gp = gl = ev = Decimal(0)
    for w, r in trades:
        if w < 0:
            raise ValueError(f"negative weight {w}")
        total += w
        ev += w * r
        if r > 0:
            wins += w
            gp += w * r
        elif r < 0:
            losses += w
            gl += w * -r
    if total == 0:
        raise ValueError("no trades (total weight 0)")
    avg_win = gp / wins if wins else None
    avg_loss = gl / losses if losses else None
    payoff = avg_win / avg_loss if avg_win is not None and avg_loss else None
    return Stats(
        weight=total,
        expectancy=ev / total,
        win_rate=wins / total,
        loss_rate=losses / total,
        avg_win=avg_win,
        avg_loss=avg_loss,
        payoff_ratio=payoff,
        profit_factor=gp / gl if gl else None,
        breakeven_win_rate=1 / (1 + payoff) if payoff is not None else None,
        gross_profit=gp,
        gross_loss=gl,
    )


def win_loss_stats(win_rate: Decimal, avg_win: Decimal, avg_loss: Decimal) -> Stats:
    """Statistics of a two-outcome book: `win_rate` of trades win `avg_win` R, the rest lose
    `avg_loss` R (a positive number). Used to check the audit's §4.3."""
    if not 0 <= win_rate <= 1 or avg_win <= 0 or avg_loss <= 0:
        raise ValueError("need 0 <= win_rate <= 1 and positive average win and loss")
    return stats([(win_rate, avg_win), (1 - win_rate, -avg_loss)])


# ---- presets and parsing --------------------------------------------------------------

PRESETS: dict[str, Policy] = {
    # The audit's §4.2 arithmetic: its ladder, no break-even move (A and B lose the whole
    # remainder at -1R), the last 25 % trailing 1R behind the peak.
    "audit-4.2": Policy("audit-4.2", break_even_r=None),
    # The same ladder as configured (§2.1: break-even move at 0.5R ACTIVE).
    "audit": Policy("audit"),
    # The audit's ladder plus mirrored partial stops on the loss side.
    "symmetric": Policy("symmetric", symmetric=True),
    # Let winners run: no ladder, break-even at 0.5R, trail 1R once +1R is reached.
    "run": Policy("run", ladder="none", trail_start_r=Decimal(1)),
    # Only a trailing stop, 1R behind the best price from entry on; no ladder, no BE.
    "trail": Policy("trail", ladder="none", break_even_r=None),
}
DEFAULT_POLICIES = ("audit-4.2", "audit", "symmetric", "run", "trail")

# The audit's §4.2 / §4.3 mix. A: up to +0.5R, back to the stop; B: up to +1R, back to
# the stop; C: up to +3.5R, back down (a 1R trail leaves at +2.5R, "trails to 2.5R").
AUDIT_MIX = "A=0.3:0.5,-1; B=0.4:1.0,-1; C=0.3:3.5,-1"

_POLICY_KEYS = ("name", "ladder", "be", "trail", "trail_from", "stop", "loss")


def _decimal(text: str, what: str) -> Decimal:
    try:
        d = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ValueError(f"{what}: {text!r} is not a number") from exc
    if not d.is_finite():
        raise ValueError(f"{what}: {text!r} is not finite")
    return d


def _optional(text: str, what: str) -> Decimal | None:
    return None if text.strip().lower() in ("none", "off", "no") else _decimal(text, what)


def parse_policy(text: str) -> Policy:
    """A preset name, or `key=value;...` (keys: name, ladder, be, trail, trail_from, stop,
    loss), optionally after a preset: `audit;trail=2;name=audit-wide`.

    be/trail/trail_from take R values or `none`; trail_from `ladder` = after the last step;
    stop is the stop distance in R (1 = -1R); loss is `none`, `mirror` or a loss ladder.
    """
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if not parts:
        raise ValueError("empty policy")
    base = replace(PRESETS["audit"], name="custom")
    if "=" not in parts[0]:
        if parts[0] not in PRESETS:
            raise ValueError(f"unknown policy preset {parts[0]!r}; presets: {', '.join(PRESETS)}")
        base = PRESETS[parts[0]]
        parts = parts[1:]
    kw: dict[str, object] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _POLICY_KEYS:
            raise ValueError(f"policy part {part!r}: expected KEY=VALUE, keys {_POLICY_KEYS}")
        value = value.strip()
        if key == "name":
            kw["name"] = value
        elif key == "ladder":
            parse_ladder(value)
            kw["ladder"] = value
        elif key == "be":
            kw["break_even_r"] = _optional(value, "be")
        elif key == "trail":
            kw["trail_r"] = _optional(value, "trail")
        elif key == "trail_from":
            kw["trail_start_r"] = None if value.lower() == "ladder" else _decimal(value, key)
        elif key == "stop":
            kw["stop_r"] = abs(_decimal(value, "stop"))
        elif value.lower() in ("none", "off", "no"):
            kw.update(symmetric=False, loss_ladder=None)
        elif value.lower() == "mirror":
            kw.update(symmetric=True, loss_ladder=None)
        else:
            parse_ladder(value)
            kw.update(symmetric=True, loss_ladder=value)
    policy = replace(base, **kw)  # type: ignore[arg-type]
    policy.harvest_config()  # validates the combination
    return policy


def parse_path(text: str) -> tuple[Decimal, ...]:
    """`"0.5,-1"` or `"0.5 -1"` -> waypoints in R."""
    items = [t for t in text.replace(",", " ").split() if t]
    if not items:
        raise ValueError(f"empty path {text!r}")
    return tuple(_decimal(t, "path waypoint") for t in items)


def parse_scenarios(text: str) -> tuple[Scenario, ...]:
    """`"A=0.3:0.5,-1; B=0.4:1.0,-1"`: NAME=WEIGHT:PATH, separated by `;`."""
    out = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, rest = part.partition("=")
        weight, sep2, path = rest.partition(":")
        if not (sep and sep2 and name.strip()):
            raise ValueError(f"scenario {part!r}: expected NAME=WEIGHT:PATH, e.g. A=0.3:0.5,-1")
        w = _decimal(weight, f"scenario {name.strip()} weight")
        if w < 0:
            raise ValueError(f"scenario {name.strip()}: negative weight")
        out.append(Scenario(name.strip(), w, parse_path(path)))
    if not out:
        raise ValueError("no scenarios")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate scenario names in {names}")
    return tuple(out)


def read_trades(
    rows: Iterable[dict[str, str]], column: str = "r"
) -> tuple[list[tuple[Decimal, Decimal]], tuple[Scenario, ...]]:
    """Rows of a trades CSV (csv.DictReader) -> (realised, paths), one of them empty.

    With `column` (default `r`): the realised R of each trade, as (weight, R). Else with a
    `path` column: one scenario per trade, to be simulated under each policy. An optional
    `weight` column weights the rows (default 1)."""
    realised: list[tuple[Decimal, Decimal]] = []
    paths: list[Scenario] = []
    for n, row in enumerate(rows, start=1):
        weight = _decimal(row.get("weight") or "1", f"row {n} weight")
        if row.get(column) not in (None, ""):
            realised.append((weight, _decimal(row[column], f"row {n} {column}")))
        elif row.get("path") not in (None, ""):
            name = row.get("name") or row.get("trade_id") or f"t{n}"
            paths.append(Scenario(name, weight, parse_path(row["path"])))
        else:
            raise ValueError(f"row {n}: neither a {column!r} nor a 'path' value")
    if realised and paths:
        raise ValueError(f"mixed rows: some have {column!r}, some only 'path'")
    if not realised and not paths:
        raise ValueError("no trades in the file")
    return realised, tuple(paths)


__all__ = [
    "AUDIT_MIX",
    "DEFAULT_POLICIES",
    "PRESETS",
    "Fill",
    "Outcome",
    "Policy",
    "PolicyReport",
    "Scenario",
    "Stats",
    "evaluate",
    "parse_path",
    "parse_policy",
    "parse_scenarios",
    "read_trades",
    "simulate",
    "stats",
    "win_loss_stats",
]
