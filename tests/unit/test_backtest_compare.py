"""`quantum backtest --compare A B`: the table and the equity curves from two report folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantum.app.backtest.compare import compare, compare_command, equity_curve
from quantum.errors import CliError

HEADER = "trade_id,symbol,side,entry_time,exit_time,net_pnl\n"


def _report(folder: Path, summary: dict, pnls: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    rows = [f"t{i},BTCUSDT,BUY,{i},{1000 + i},{p}\n" for i, p in enumerate(pnls)]
    (folder / "trades.csv").write_text(HEADER + "".join(rows))
    return folder


def test_fields_side_by_side_with_differences(tmp_path: Path) -> None:
    a = _report(tmp_path / "a", {"trades": 2, "net_pnl": "1.5", "symbols": ["X"]}, ["1", "0.5"])
    b = _report(tmp_path / "b", {"trades": 3, "net_pnl": "-0.25", "wins": 1}, ["1", "-2", "0.75"])
    result = compare(a, b)
    rows = {r["field"]: r for r in result["fields"]}
    assert rows["trades"]["B-A"] == "1"
    assert rows["net_pnl"]["B-A"] == "-1.75"
    assert rows["symbols"]["B-A"] is None and not rows["symbols"]["same"]
    assert rows["wins"]["A"] is None
    assert result["equity"]["A"] == [(1000, "1"), (1001, "1.5")]
    assert result["equity"]["B"][-1] == (1002, "-0.25")


def test_command_writes_compare_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _report(tmp_path / "a", {"trades": 1}, ["2"])
    b = _report(tmp_path / "b", {"trades": 1}, ["2"])
    assert compare_command(a, b, out=tmp_path / "cmp") == 0
    written = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert all(r["same"] for r in written["fields"])
    assert "trades" in capsys.readouterr().out


def test_not_a_report_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CliError):
        compare(tmp_path / "empty", tmp_path / "empty")


@given(st.lists(st.decimals(-1000, 1000, places=4, allow_nan=False), max_size=30))
def test_equity_ends_at_the_sum_of_the_trades(tmp_path_factory, pnls) -> None:
    folder = _report(tmp_path_factory.mktemp("r") / "r", {}, [str(p) for p in pnls])
    curve = equity_curve(folder / "trades.csv")
    assert len(curve) == len(pnls)
    if pnls:
        from decimal import Decimal

        assert Decimal(curve[-1][1]) == sum(pnls, Decimal(0))
