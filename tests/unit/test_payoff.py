"""Payoff analyser: the audit's §4.2 table reproduced from the ladder through the harvest
core, the §4.3 check, statistics, parsing, trade lists and the CLI."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from agents.harvest import payoff_cli as cli
from agents.harvest.config import HarvestConfig
from agents.harvest.payoff import (
    AUDIT_MIX,
    PRESETS,
    Policy,
    evaluate,
    parse_path,
    parse_policy,
    parse_scenarios,
    read_trades,
    simulate,
    stats,
    win_loss_stats,
)

# The audit's scenario paths (§4.2), in R: up to the peak, then back down.
A, B, C = parse_path("0.5,-1"), parse_path("1.0,-1"), parse_path("3.5,-1")
# §4.2's arithmetic: the configured ladder (HARVEST_LADDER's default), no break-even move,
# the last quarter trailing 1R behind the peak ("hits 1.5R then trails to 2.5R").
AUDIT_42 = Policy(
    "audit-4.2", ladder=HarvestConfig().ladder, break_even_r=None, trail_r=D(1), stop_r=D(1)
)


def test_audit_scenario_table_is_reproduced_from_the_ladder() -> None:
    ra, fills_a = simulate(AUDIT_42, A)
    rb, _ = simulate(AUDIT_42, B)
    rc, fills_c = simulate(AUDIT_42, C)
    assert (ra, rb, rc) == (D("-0.625"), D("-0.125"), D("1.375"))
    # A: 25 % at +0.5R, the remaining 75 % at the -1R stop
    assert [(f.step, f.fraction, f.r) for f in fills_a] == [
        ("tp1", D("0.25"), D("0.5")),
        ("stop", D("0.75"), D(-1)),
    ]
    # C: three steps, then the last quarter leaves on the trailing stop at +2.5R
    assert [(f.step, f.reason, f.r) for f in fills_c] == [
        ("tp1", "HARVEST", D("0.5")),
        ("tp2", "HARVEST", D("1.0")),
        ("tp3", "HARVEST", D("1.5")),
        ("stop", "TRAILING_STOP", D("2.5")),
    ]


def test_audit_mix_expectancy() -> None:
    report = evaluate(AUDIT_42, parse_scenarios(AUDIT_MIX))
    assert [s.weight for s in (o.scenario for o in report.outcomes)] == [
        D("0.3"),
        D("0.4"),
        D("0.3"),
    ]
    assert report.stats.expectancy == D("0.175")
    assert PRESETS["audit-4.2"] == AUDIT_42


def test_the_audits_own_mix_is_profitable_by_profit_factor() -> None:
    """§4.2's mix: gross profit 0.3 * 1.375, gross loss 0.3 * 0.625 + 0.4 * 0.125."""
    s = evaluate(AUDIT_42, parse_scenarios(AUDIT_MIX)).stats
    assert s.profit_factor == (D("0.3") * D("1.375")) / (
        D("0.3") * D("0.625") + D("0.4") * D("0.125")
    )
    assert s.profit_factor > 1 and s.win_rate == D("0.3")
    assert s.breakeven_win_rate == 1 / (1 + s.avg_win / s.avg_loss)  # type: ignore[operator]


def test_break_even_move_turns_a_and_b_into_small_wins() -> None:
    """§2.1 says the 0.5R break-even move is active: A and B then keep their partials."""
    audit = PRESETS["audit"]
    assert audit.break_even_r == D("0.5")
    results = [simulate(audit, p)[0] for p in (A, B, C)]
    assert results == [D("0.25") * D("0.5"), D("0.25") * D("0.5") + D("0.25") * 1, D("1.375")]


def test_section_4_3_inputs_do_not_give_pf_0_7() -> None:
    wins = D("0.2") * D("0.125") + D("0.5") * D("0.375") + D("0.3") * D("1.375")
    as_written = win_loss_stats(D("0.45"), wins / D("0.45"), D(1))  # "... / 0.45"
    shares = win_loss_stats(D("0.45"), wins, D(1))  # 20/50/30 as shares of the wins
    assert wins == D("0.625")
    assert as_written.profit_factor == wins / D("0.55") and as_written.expectancy == D("0.075")
    assert shares.profit_factor == D("0.45") * wins / D("0.55")
    for s in (as_written, shares):
        assert s.profit_factor != D("0.7") and s.breakeven_win_rate != 1 / D("1.7")
    # 58.8 % is 1 / (1 + b) for a *payoff ratio* b = 0.7, whose profit factor at 45 % is not 0.7
    claimed = win_loss_stats(D("0.45"), D("0.7"), D(1))
    assert claimed.breakeven_win_rate == 1 / D("1.7") and claimed.payoff_ratio == D("0.7")
    assert claimed.profit_factor == D("0.45") * D("0.7") / D("0.55")


def test_section_4_3_book_as_paths_matches_the_ladder_with_break_even() -> None:
    """55 % straight to the stop, the 45 % wins split 20/50/30 over A/B/C: with the break-even
    move the wins are exactly §4.3's 0.125R / 0.375R / 1.375R, average 0.625R."""
    mix = "D=0.55:-1; A=0.09:0.5,-1; B=0.225:1.0,-1; C=0.135:3.5,-1"
    s = evaluate(PRESETS["audit"], parse_scenarios(mix)).stats
    assert s.win_rate == D("0.45") and s.avg_win == D("0.625") and s.avg_loss == 1


def test_symmetric_mode_and_a_tighter_stop() -> None:
    r, fills = simulate(PRESETS["symmetric"], parse_path("-1"))
    assert r == D("0.25") * D("-0.5") + D("0.75") * -1
    assert [f.reason for f in fills] == ["PARTIAL_STOP", "PARTIAL_STOP", "STOP_LOSS"]
    tight = parse_policy("audit-4.2;stop=0.5;name=tight")
    assert simulate(tight, parse_path("-1"))[0] == D("-0.5")
    assert simulate(tight, A)[0] == D("0.25") * D("0.5") + D("0.75") * D("-0.5")


def test_let_winners_run_and_open_at_end() -> None:
    assert [simulate(PRESETS["run"], p)[0] for p in (A, B, C)] == [0, 0, D("2.5")]
    assert [simulate(PRESETS["trail"], p)[0] for p in (A, B, C)] == [D("-0.5"), 0, D("2.5")]
    r, fills = simulate(PRESETS["run"], parse_path("0.3"))
    assert r == D("0.3") and fills[-1].step == "end"


def test_stats_weights_scratches_and_no_losses() -> None:
    s = stats([(D(1), D(2)), (D(1), D(0)), (D(2), D(-1))])
    assert s.weight == 4 and s.expectancy == 0
    assert s.win_rate == D("0.25") and s.loss_rate == D("0.5")
    assert s.profit_factor == 1 and s.payoff_ratio == 2 and s.breakeven_win_rate == 1 / D(3)
    s = stats([(D(1), D(1))])
    assert s.profit_factor is None and s.avg_loss is None and s.breakeven_win_rate is None
    with pytest.raises(ValueError):
        stats([])
    with pytest.raises(ValueError):
        stats([(D(-1), D(1))])


@pytest.mark.parametrize(
    "bad",
    ["nope", "ladder=0.5", "be=x", "audit;colour=red", "", "ladder=0.5:0.25;be=0.5;loss=0:1"],
)
def test_bad_policies_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_policy(bad)


def test_policy_parsing() -> None:
    p = parse_policy("name=x;ladder=1:0.5;be=none;trail=1.5;trail_from=0.5;stop=-1;loss=0.5:0.5")
    assert (p.name, p.ladder, p.break_even_r, p.trail_r, p.trail_start_r, p.stop_r) == (
        "x",
        "1:0.5",
        None,
        D("1.5"),
        D("0.5"),
        D(1),
    )
    assert p.symmetric and p.loss_ladder == "0.5:0.5"
    assert parse_policy("symmetric;loss=none").symmetric is False
    assert parse_policy("audit;trail_from=ladder").trail_start_r is None
    assert "trail 1R after the ladder" in PRESETS["audit"].describe()


@pytest.mark.parametrize("bad", ["A=0.3", "A=x:1", "=0.3:1", "A=-1:1", "A=1:1;A=1:2", "A=1:"])
def test_bad_scenarios_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_scenarios(bad)


def test_trade_lists() -> None:
    realised, paths = read_trades([{"r": "1.5"}, {"r": "-1", "weight": "2"}])
    assert paths == () and realised == [(D(1), D("1.5")), (D(2), D(-1))]
    realised, paths = read_trades([{"path": "0.5 -1", "trade_id": "t7"}, {"path": "2,0"}])
    assert realised == [] and [p.name for p in paths] == ["t7", "t2"]
    with pytest.raises(ValueError):
        read_trades([{"r": "1"}, {"path": "1"}])
    with pytest.raises(ValueError):
        read_trades([{"x": "1"}])


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["payoff", *argv])


def test_cli_default_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(_args()) == 0
    text = capsys.readouterr().out
    assert "audit-4.2" in text and "expectancy (R)" in text and "+0.175" in text
    assert cli.run(_args("--policy", "audit-4.2", "--policy", "run", "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    audit = data["policies"][0]
    assert [o["r"] for o in audit["outcomes"]] == ["-0.625", "-0.125", "1.375"]
    assert audit["stats"]["expectancy_r"] == "0.175"
    assert data["policies"][1]["name"] == "run"


def test_cli_trades_and_win_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "trades.csv"
    f.write_text("trade_id,r\n1,2\n2,-1\n3,-1\n")
    assert cli.run(_args("--trades", str(f), "--json")) == 0
    s = json.loads(capsys.readouterr().out)["stats"]
    assert s["expectancy_r"] == "0" and s["profit_factor"] == "1"
    f.write_text("trade_id,path\n1,0.5 -1\n2,3.5 -1\n")
    assert cli.run(_args("--trades", str(f), "--policy", "audit-4.2", "--detail")) == 0
    assert "tp1 HARVEST" in capsys.readouterr().out
    assert cli.run(_args("--win-loss", "0.45", "0.7", "1")) == 0
    assert "58.8 %" in capsys.readouterr().out


def test_cli_errors_are_user_errors() -> None:
    from quantum.errors import CliError

    with pytest.raises(CliError):
        cli.run(_args("--policy", "nope"))
    with pytest.raises(CliError):
        cli.run(_args("--policy", "audit", "--policy", "audit"))
