"""`quantum train` on small generated data: no look-ahead, deterministic, weights that refuse
other features, and an engine that gives the same votes live (bar by bar) as in batch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.ai_engine import train as T
from agents.ai_engine import train_cli
from agents.ai_engine.bundle_errors import BundleError, EnsembleMismatch, FeatureMismatch
from agents.ai_engine.config import (
    FEATURE_VERSION,
    AIEngineConfig,
    FeatureConfig,
    NetConfig,
    TrainConfig,
)
from agents.ai_engine.core import SignalEngine
from agents.ai_engine.features import Bar
from agents.ai_engine.weights import bundle_for, load_bundle, resolve_weights_path, save_bundle
from tests.unit.test_ai_engine_core import kline
from tests.unit.test_features import make_bars

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
CONFIG = AIEngineConfig(
    nets=NetConfig(mlp_hidden=(8,), cnn_channels=4, seq_len=16),
    train=TrainConfig(epochs=2, batch_size=128, label_horizon=5),
)


def data(n: int = 400) -> list[T.SymbolBars]:
    return [
        T.SymbolBars(s, "1m", "generated", tuple(make_bars(n, 20 + i, symbol=s)))
        for i, s in enumerate(SYMBOLS)
    ]


@pytest.fixture(scope="module")
def trained() -> T.TrainResult:
    return T.train(data(), CONFIG)


def test_labels_come_from_later_bars_and_the_split_is_purged() -> None:
    bars = data()
    ds = T.build_dataset(bars, CONFIG.features, horizon=5)
    closes = {s.symbol: np.array([b.close for b in s.bars]) for s in bars}
    times = {s.symbol: np.array([b.open_time_ms for b in s.bars]) for s in bars}
    for i in range(0, len(ds), 37):
        sym = ds.symbols[ds.symbol[i]]
        t = int(np.flatnonzero(times[sym] == ds.time_ms[i])[0])
        assert ds.label_time_ms[i] == times[sym][t + 5]
        assert ds.y[i] == float(closes[sym][t + 5] > closes[sym][t])
        assert ds.closes[i][-1] == closes[sym][t]  # the history ends at bar t, not after
    split = T.time_split(ds, 0.6, 0.2)
    assert ds.label_time_ms[split.train].max() < ds.time_ms[split.validation].min()
    assert ds.label_time_ms[split.validation].max() < ds.time_ms[split.test].min()
    assert len(set(split.train) | set(split.validation) | set(split.test)) < len(ds)  # purged


def test_training_is_deterministic(trained: T.TrainResult) -> None:
    again = T.train(data(), CONFIG)
    assert again.bundle.bundle_id == trained.bundle.bundle_id
    for k, v in trained.bundle.state.items():
        assert torch.equal(v, again.bundle.state[k])
    assert again.report["metrics"] == trained.report["metrics"]
    other = T.train(
        data(), CONFIG.model_copy(update={"train": CONFIG.train.model_copy(update={"seed": 8})})
    )
    assert other.bundle.bundle_id != trained.bundle.bundle_id


def test_metadata_says_what_the_weights_are(trained: T.TrainResult) -> None:
    meta = trained.report
    assert meta["feature_names"] == list(CONFIG.features.names())
    assert meta["feature_version"] == FEATURE_VERSION
    t = meta["training"]
    assert t["seed"] == 7 and t["torch"] == torch.__version__
    assert [s["symbol"] for s in t["data"]["symbols"]] == list(SYMBOLS)
    assert t["data"]["from_ms"] < t["split"]["validation_from_ms"] < t["split"]["test_from_ms"]
    assert set(meta["metrics"]["test"]) >= {"mlp", "cnn", "logistic", "momentum", "ensemble"}
    table = meta["reliability"]["calibrated"]
    assert sum(b["count"] for b in table) == t["split"]["test"]
    assert meta["ensemble"]["calibration"]["kind"] == "isotonic"
    assert "reliability" in T.format_report(trained)


def test_saved_weights_load_and_refuse_other_features(
    trained: T.TrainResult, tmp_path: Path
) -> None:
    save_bundle(tmp_path, trained.bundle)
    loaded = load_bundle(
        tmp_path, feature_names=CONFIG.features.names(), feature_version=FEATURE_VERSION
    )
    assert loaded.bundle_id == trained.bundle.bundle_id
    assert (tmp_path / "weights.pt").stat().st_size < 1_000_000
    other = FeatureConfig(return_horizons=(1, 5, 15))
    with pytest.raises(FeatureMismatch, match="ret_60"):
        load_bundle(tmp_path, feature_names=other.names(), feature_version=FEATURE_VERSION)
    with pytest.raises(FeatureMismatch):
        load_bundle(
            tmp_path, feature_names=CONFIG.features.names(), feature_version=FEATURE_VERSION + 1
        )
    with pytest.raises(FeatureMismatch):  # the engine checks too, whoever loaded the weights
        SignalEngine(CONFIG.model_copy(update={"features": other}), loaded)
    (tmp_path / "weights.pt").write_bytes((tmp_path / "weights.pt").read_bytes()[:-1] + b"x")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(
            tmp_path, feature_names=CONFIG.features.names(), feature_version=FEATURE_VERSION
        )
    with pytest.raises(BundleError, match="no trained weights"):
        load_bundle(tmp_path / "nope", feature_names=(), feature_version=FEATURE_VERSION)


def test_the_calibrator_belongs_to_its_ensemble(trained: T.TrainResult) -> None:
    reweighted = CONFIG.model_copy(update={"weights": (2.0, 1.0, 1.0, 1.0, 1.0)})
    with pytest.raises(EnsembleMismatch):
        SignalEngine(reweighted, trained.bundle)
    engine = SignalEngine(
        reweighted.model_copy(update={"calibration_required": False}), trained.bundle
    )
    assert engine.calibrator.kind == "none"
    assert SignalEngine(CONFIG, trained.bundle).calibrator.kind == "isotonic"


def test_live_votes_equal_batch_votes(trained: T.TrainResult) -> None:
    engine = SignalEngine(CONFIG, trained.bundle)
    bars: list[Bar] = list(data()[1].bars)
    state = engine.new_state("ETHUSDT")
    live = []
    for b in bars:
        step = engine.step(state, kline(b))
        if step.signal is not None:
            live.append(step.signal)
    ds = T.build_dataset([T.SymbolBars("ETHUSDT", "1m", "x", tuple(bars))], CONFIG.features, 0)
    per_model, calibrated = engine.probabilities(ds.features, ds.closes)
    assert len(live) == len(ds)
    live_votes = np.array([[v.probability for v in s.votes] for s in live])
    np.testing.assert_allclose(live_votes, per_model, rtol=0, atol=1e-6)
    np.testing.assert_allclose([s.probability for s in live], calibrated, rtol=0, atol=1e-6)
    assert live[-1].model == f"ensemble@{trained.bundle.bundle_id}"
    # deterministic inference: a second engine on the same weights gives identical signals
    other = SignalEngine(CONFIG, trained.bundle)
    state = other.new_state("ETHUSDT")
    again = [s for b in bars if (s := other.step(state, kline(b)).signal) is not None]
    assert again == live


def test_the_command_reads_csv_files_and_writes_the_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = []
    for s in data(300):
        path = tmp_path / f"{s.symbol}-1m-2026-01.csv"
        rows = [
            f"{b.open_time_ms},{b.open!r},{b.high!r},{b.low!r},{b.close!r},{b.volume!r},"
            f"{b.close_time_ms},0,10,0,0,0"
            for b in s.bars
        ]
        path.write_text(
            "open_time,open,high,low,close,volume,close_time,qv,count,tb,tq,i\n" + "\n".join(rows)
        )
        files.append(str(path))
    out = tmp_path / "bundle"
    code = train_cli.main(
        [
            "--data",
            *files,
            "--out",
            str(out),
            "--epochs",
            "1",
            "--horizon",
            "5",
            "--calibration",
            "platt",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "test metrics" in printed and str(out) in printed
    meta = json.loads((out / "meta.json").read_text())
    assert meta["label_horizon"] == 5 and meta["ensemble"]["calibration"]["kind"] == "platt"
    assert [s["bars"] for s in meta["training"]["data"]["symbols"]] == [300, 300, 300]
    assert train_cli.main(["--data", str(tmp_path / "missing.csv")]) == 2


def test_the_bundled_default_weights_fit_the_default_engine() -> None:
    """data/models/default is what `SignalEngine(AIEngineConfig())` runs without training;
    a change of features or of the default ensemble must come with retrained weights."""
    config = AIEngineConfig()
    bundle = bundle_for(config)
    assert bundle is not None
    path = resolve_weights_path(config.weights_path)
    assert sum(f.stat().st_size for f in path.iterdir()) < 1_000_000
    engine = SignalEngine(config, bundle)  # features, ensemble and calibrator all match
    assert engine.calibrator.kind == bundle.meta["ensemble"]["calibration"]["kind"]
    assert bundle.meta["training"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    state = engine.new_state("BTCUSDT")
    signals = [s for b in make_bars(100, 2) if (s := engine.step(state, kline(b)).signal)]
    assert len(signals) == 100 - config.features.warmup_bars() + 1
    assert all(0 <= s.probability <= 1 and len(s.votes) == 5 for s in signals)
    assert bundle_for(AIEngineConfig(models=("ma_crossover",), weights=(1.0,))) is None


def test_training_on_the_bundled_sample() -> None:
    """The CI-sized run: the whole bundled sample with the default config. Bounded in CPU
    seconds (not wall seconds, which depend on what else the machine runs)."""
    started = time.process_time()
    result = T.train(T.load_kline_files(T.sample_files()), AIEngineConfig())
    cpu = time.process_time() - started
    assert result.report["training"]["split"]["test"] > 0
    assert cpu < 60, f"training took {cpu:.1f} CPU seconds"
