"""`quantum data generate | inspect` through their argparse entry (`add_commands`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from quantum.errors import CliError
from quantum.marketdata.cli import add_commands


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="quantum")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args, None))


def test_generate_then_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen"
    argv = ["data", "generate", "--out", str(out), "--symbols", "BTCUSDT,DOGEUSDT"]
    assert _run([*argv, "--minutes", "90", "--seed", "3", "--label", "t"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["BTCUSDT-1m-t.zip", "DOGEUSDT-1m-t.zip"]
    capsys.readouterr()
    assert _run(["data", "inspect", str(out), "--from", "2026-01-01T00:30:00Z"]) == 0
    report = capsys.readouterr().out
    assert "BTCUSDT" in report and "60 bars" in report and "120 bars, 0 row errors" in report
    assert "2026-01-01T00:30:00Z .. 2026-01-01T01:29:00Z" in report


def test_inspect_reports_row_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "ETHUSDT.csv"
    bad.write_text("time,open,high,low,close,volume\n1704067200,1,2,0.5,1.5,3\nnope\n")
    assert _run(["data", "inspect", str(bad), "--interval", "1m"]) == 1
    assert "MALFORMED_ROW: 1" in capsys.readouterr().out
    with pytest.raises(CliError, match="no generator profile"):
        _run(["data", "generate", "--out", str(tmp_path), "--symbols", "PEPEUSDT"])
    with pytest.raises(CliError, match="symbol"):
        _run(["data", "inspect", str(tmp_path / "ETHUSDT.csv"), "--symbol", "eth"])
