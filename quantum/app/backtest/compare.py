"""`quantum backtest --compare A B`: two runs' reports side by side.

Reads each folder's `summary.json`, `run.json` (if any) and `trades.csv`, prints one table
(every summary field of either run, A, B, and B - A where both are numbers), and writes
`compare.json` (the table, both equity curves, the paths of each report's own pictures) and
`compare.png` (the two equity curves, cumulative net PnL at each trade's exit, on one
chart) into the output folder.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from quantum.errors import CliError


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def equity_curve(trades_csv: Path) -> list[tuple[int, str]]:
    """(exit time ms, cumulative net PnL) after each closed trade, in the file's order
    (report.py writes it ordered by exit time and trade id)."""
    if not trades_csv.is_file():
        return []
    total = Decimal(0)
    curve = []
    with trades_csv.open() as handle:
        for row in csv.DictReader(handle):
            total += Decimal(row["net_pnl"])
            curve.append((int(row["exit_time"]), str(total)))
    return curve


def _load(folder: Path) -> dict[str, Any]:
    path = folder / "summary.json"
    if not path.is_file():
        raise CliError(f"backtest --compare: {path} not found (not a report folder?)")
    run = folder / "run.json"
    return {
        "summary": json.loads(path.read_text()),
        "run": json.loads(run.read_text()) if run.is_file() else {},
        "equity": equity_curve(folder / "trades.csv"),
        "pictures": sorted(str(p) for p in folder.glob("*.png")),  # the report's, if any
    }


def compare(a: Path, b: Path) -> dict[str, Any]:
    """The comparison of two report folders (what compare.json holds)."""
    runs = {"A": _load(a), "B": _load(b)}
    rows = []
    keys = sorted(set(runs["A"]["summary"]) | set(runs["B"]["summary"]))
    for key in keys:
        va, vb = runs["A"]["summary"].get(key), runs["B"]["summary"].get(key)
        na, nb = _number(va), _number(vb)
        diff = None if na is None or nb is None else str(nb - na)
        rows.append({"field": key, "A": va, "B": vb, "B-A": diff, "same": va == vb})
    return {
        "A": str(a),
        "B": str(b),
        "fields": rows,
        "run": {"A": runs["A"]["run"], "B": runs["B"]["run"]},
        "equity": {"A": runs["A"]["equity"], "B": runs["B"]["equity"]},
        "pictures": {"A": runs["A"]["pictures"], "B": runs["B"]["pictures"]},
    }


def _cell(value: Any, width: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def render(result: dict[str, Any], width: int = 28) -> str:
    lines = [f"A = {result['A']}", f"B = {result['B']}", ""]
    lines.append(f"{'field':<37} {'A':<{width}} {'B':<{width}} B-A")
    for row in result["fields"]:
        mark = " " if row["same"] else "*"
        a, b = _cell(row["A"], width), _cell(row["B"], width)
        lines.append(f"{mark}{row['field']:<36} {a:<{width}} {b:<{width}} {row['B-A'] or ''}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> bool:
    """Both equity curves on one chart; False (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from datetime import UTC, datetime

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name in ("A", "B"):
        curve = result["equity"][name]
        if curve:
            xs = [datetime.fromtimestamp(t / 1000, UTC) for t, _ in curve]
            ax.step(xs, [float(v) for _, v in curve], where="post", label=f"{name}: {result[name]}")
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set_ylabel("cumulative net PnL (USDT)")
    ax.set_title("equity by trade exit")
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def compare_command(a: Path, b: Path, *, out: Path | None = None) -> int:
    result = compare(a, b)
    folder = out or Path("runs") / f"compare-{a.name}-{b.name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compare.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    drawn = plot(result, folder / "compare.png")
    print(render(result))
    print(f"\ncompare: {folder}/compare.json" + (f", {folder}/compare.png" if drawn else ""))
    return 0
