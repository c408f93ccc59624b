"""`quantum payoff`: exit policies side by side in R (see docs/payoff.md)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from agents.harvest.payoff import (
    AUDIT_MIX,
    DEFAULT_POLICIES,
    PRESETS,
    PolicyReport,
    Scenario,
    Stats,
    evaluate,
    parse_policy,
    parse_scenarios,
    read_trades,
    stats,
    win_loss_stats,
)

EPILOG = f"""\
policies: a preset ({", ".join(PRESETS)}) or KEY=VALUE;... with keys name, ladder, be,
  trail, trail_from, stop, loss, e.g. 'name=wide;ladder=1:0.5;be=none;trail=1.5'.
  Presets can be amended: 'audit;trail=2;name=audit-trail2'.
scenarios: NAME=WEIGHT:PATH;... where PATH lists waypoints in R, e.g. the audit's mix
  '{AUDIT_MIX}' (the default).
trades CSV: a column of realised R per trade (--column, default r) for statistics, or a
  'path' column (waypoints in R) to replay each trade under every policy.
"""


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "payoff",
        help="compare exit ladders in R: expectancy, profit factor, breakeven win rate",
        description="Run exit policies (profit ladder, break-even, trailing, partial stops) "
        "over R price paths with the harvest core and compare them side by side.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--policy",
        action="append",
        metavar="SPEC",
        help=f"a policy to compare (repeatable; default: {', '.join(DEFAULT_POLICIES)})",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scenarios", metavar="MIX", help="scenario mix (default: the audit's)")
    src.add_argument("--trades", type=Path, metavar="CSV", help="trade list from a backtest")
    src.add_argument(
        "--win-loss",
        nargs=3,
        metavar=("WIN_RATE", "AVG_WIN", "AVG_LOSS"),
        help="statistics of a two-outcome book, e.g. 0.45 0.7 1.0",
    )
    p.add_argument("--column", default="r", help="the trades CSV's R column (default: r)")
    p.add_argument("--detail", action="store_true", help="list every simulated exit")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable output")
    fmt.add_argument("--markdown", action="store_true", help="the table as Markdown (for docs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, _settings: object = None) -> int:
    from quantum.errors import CliError

    try:
        result = analyse(args)
    except (ValueError, OSError) as exc:
        raise CliError(f"payoff: {exc}") from exc
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result, detail=args.detail, markdown=args.markdown))
    return 0


def analyse(args: argparse.Namespace) -> dict[str, Any]:
    """The analysis as a JSON-safe dict (decimals as strings)."""
    if args.win_loss:
        wr, aw, al = (Decimal(x) for x in args.win_loss)
        return {"kind": "win_loss", "stats": _stats_json(win_loss_stats(wr, aw, al))}
    scenarios: tuple[Scenario, ...]
    if args.trades is not None:
        with args.trades.open(newline="") as fh:
            realised, scenarios = read_trades(csv.DictReader(fh), args.column)
        if realised:
            return {
                "kind": "trades",
                "source": str(args.trades),
                "stats": _stats_json(stats(realised)),
            }
    else:
        scenarios = parse_scenarios(args.scenarios or AUDIT_MIX)
    policies = [parse_policy(s) for s in (args.policy or DEFAULT_POLICIES)]
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must differ (name=...): {names}")
    reports = [evaluate(p, scenarios) for p in policies]
    return {
        "kind": "policies",
        "scenarios": [
            {"name": s.name, "weight": _num(s.weight), "path": [_num(w) for w in s.path]}
            for s in scenarios
        ],
        "policies": [_report_json(r) for r in reports],
    }


def _num(d: Decimal | None, places: int = 12) -> str | None:
    if d is None:
        return None
    q = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = format(q, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _stats_json(s: Stats) -> dict[str, str | None]:
    return {
        "weight": _num(s.weight),
        "expectancy_r": _num(s.expectancy),
        "win_rate": _num(s.win_rate),
        "loss_rate": _num(s.loss_rate),
        "avg_win_r": _num(s.avg_win),
        "avg_loss_r": _num(s.avg_loss),
        "payoff_ratio": _num(s.payoff_ratio),
        "profit_factor": _num(s.profit_factor),
        "breakeven_win_rate": _num(s.breakeven_win_rate),
        "gross_profit_r": _num(s.gross_profit),
        "gross_loss_r": _num(s.gross_loss),
    }


def _report_json(r: PolicyReport) -> dict[str, Any]:
    return {
        "name": r.policy.name,
        "description": r.policy.describe(),
        "outcomes": [
            {
                "scenario": o.scenario.name,
                "r": _num(o.r),
                "fills": [
                    {
                        "step": f.step,
                        "reason": f.reason,
                        "fraction": _num(f.fraction),
                        "at_r": _num(f.r),
                    }
                    for f in o.fills
                ],
            }
            for o in r.outcomes
        ],
        "stats": _stats_json(r.stats),
    }


# ---- text rendering -------------------------------------------------------------------


def _fmt_r(text: str | None) -> str:
    if text is None:
        return "-"
    d = Decimal(text).quantize(Decimal("0.0001"))
    out = _num(d, 4) or "0"
    return out if d <= 0 else "+" + out


def _fmt_pct(text: str | None) -> str:
    return "-" if text is None else f"{Decimal(text) * 100:.1f} %"


def _fmt_ratio(text: str | None, none: str = "-") -> str:
    return none if text is None else f"{Decimal(text):.3f}"


def _stats_rows(s: dict[str, str | None]) -> list[tuple[str, str]]:
    no_loss = "inf (no losses)" if s["gross_loss_r"] in ("0", None) else "-"
    return [
        ("expectancy (R)", _fmt_r(s["expectancy_r"])),
        ("win rate", _fmt_pct(s["win_rate"])),
        ("loss rate", _fmt_pct(s["loss_rate"])),
        ("avg win (R)", _fmt_r(s["avg_win_r"])),
        ("avg loss (R)", _fmt_r(None if s["avg_loss_r"] is None else f"-{s['avg_loss_r']}")),
        ("payoff ratio", _fmt_ratio(s["payoff_ratio"], no_loss)),
        ("profit factor", _fmt_ratio(s["profit_factor"], no_loss)),
        ("breakeven win rate", _fmt_pct(s["breakeven_win_rate"])),
    ]


def _table(header: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---" + "|--:" * (len(header) - 1) + "|"]
        return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)

    def fmt(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([fmt(header), line, *(fmt(r) for r in rows)])


def render(result: dict[str, Any], *, detail: bool = False, markdown: bool = False) -> str:
    if result["kind"] in ("win_loss", "trades"):
        title = "trades" if result["kind"] == "trades" else "two-outcome book"
        return _table(["", title], [list(r) for r in _stats_rows(result["stats"])], markdown)
    pols = result["policies"]
    header = ["", *(p["name"] for p in pols)]
    total = sum(Decimal(s["weight"]) for s in result["scenarios"])
    rows: list[list[str]] = []
    for k, sc in enumerate(result["scenarios"]):
        share = Decimal(sc["weight"]) / total * 100
        label = f"{sc['name']} ({share:.1f} %: {', '.join(sc['path'])})"
        rows.append([label, *(_fmt_r(p["outcomes"][k]["r"]) for p in pols)])
    stat_rows = [_stats_rows(p["stats"]) for p in pols]
    for i, (label, _) in enumerate(stat_rows[0]):
        rows.append([label, *(sr[i][1] for sr in stat_rows)])
    out = [_table(header, rows, markdown), ""]
    out += [f"{p['name']}: {p['description']}" for p in pols]
    if detail:
        for p in pols:
            out.append(f"\n{p['name']}:")
            for o in p["outcomes"]:
                fills = ", ".join(
                    f"{f['step']} {f['reason']} {f['fraction']} @ {_fmt_r(f['at_r'])}R"
                    for f in o["fills"]
                )
                out.append(f"  {o['scenario']}: {_fmt_r(o['r'])}R = {fills}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m agents.harvest.payoff_cli ...`) until the CLI wires it."""
    parser = argparse.ArgumentParser(prog="quantum")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args, None))
    except Exception as exc:
        if type(exc).__name__ == "CliError":
            print(f"quantum: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
