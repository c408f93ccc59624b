"""`quantum train`: fit the trained models and the ensemble's calibrator on replayed klines.

Pipeline (docs/signals.md has the why of each step):
1. Features per symbol by the live code path (`compute_batch`), so training sees exactly
   the numbers the engine will see; a sample is a bar with every window full.
2. Label y_t = 1 if close[t + h] > close[t] (h = `label_horizon` bars), from bars after t
   only; features at t use bars <= t only.
3. Time-ordered split of the bar times into train / validation / test (60/20/20 by
   default). A sample whose label bar lies in a later part is dropped (purged), so no
   training label looks into the validation or test period.
4. Fit on train: the scaler, the logistic regression (Newton), the MLP and the CNN (Adam,
   the epoch with the best validation loss kept). Rules need no fit.
5. Pool the configured models' votes; fit the calibrator on validation.
6. Report on test: each model's and the ensemble's log loss, Brier, accuracy, AUC, and the
   reliability table of the calibrated ensemble.
7. Save weights.pt + meta.json (agents/ai_engine/bundle.py).

Seeded and single-threaded torch: the same data and config give bit-identical weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.ai_engine.bundle import ModelBundle, make_bundle
from agents.ai_engine.config import FEATURE_VERSION, AIEngineConfig, FeatureConfig, TrainConfig
from agents.ai_engine.core import SignalEngine
from agents.ai_engine.ensemble import (
    expected_calibration_error,
    fit_calibrator,
    metrics,
    pool,
    reliability_table,
)
from agents.ai_engine.features import Bar, bar_from_kline, compute_batch
from agents.ai_engine.models.base import Scaler, sequence_inputs
from agents.ai_engine.models.logistic import fit_logistic
from agents.ai_engine.models.nets import CNNNet, MLPNet, configure_torch
from agents.ai_engine.weights import resolve_weights_path, save_bundle


@dataclass(frozen=True, slots=True)
class SymbolBars:
    """One symbol's time-ordered bars; `source` says what kind of data (REPLAY, SAMPLE, ...)."""

    symbol: str
    interval: str
    source: str
    bars: tuple[Bar, ...]


def load_kline_files(paths: Iterable[Path]) -> list[SymbolBars]:
    """Klines of Binance archives or CSV files (the market-data kit reads them), by symbol.

    Training data must be clean: a bad row raises (ValueError naming file and line) instead
    of leaving a silent hole in the series.
    """
    by_symbol: dict[tuple[str, str], list[Bar]] = {}
    sources: dict[tuple[str, str], str] = {}
    for record in _kline_records([Path(p) for p in paths]):
        bar = bar_from_kline(record)
        key = (bar.symbol, str(record["interval"]))
        by_symbol.setdefault(key, []).append(bar)
        sources[key] = str(record.get("source", ""))
    out = []
    for (symbol, interval), bars in sorted(by_symbol.items()):
        bars.sort(key=lambda b: b.open_time_ms)
        out.append(SymbolBars(symbol, interval, sources[(symbol, interval)], tuple(bars)))
    return out


def _kline_records(paths: list[Path]) -> Iterator[dict[str, Any]]:
    """The market.ticks record of every bar in `paths`, merged in event-time order."""
    from quantum.marketdata import RowError, replay_files

    for item in replay_files(paths):
        if isinstance(item, RowError):
            raise ValueError(f"{item.source}:{item.line}: {item.error}")
        yield item.to_record()


def sample_files() -> list[Path]:
    """The bundled sample's files."""
    from quantum.marketdata import sample_files as files

    return list(files())


# ---- dataset ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dataset:
    """One row per usable bar of any symbol."""

    features: np.ndarray  # (n, F)
    closes: np.ndarray  # (n, history_length)
    y: np.ndarray  # (n,) 0/1
    time_ms: np.ndarray  # (n,) open time of bar t
    label_time_ms: np.ndarray  # (n,) open time of bar t + h
    symbol: np.ndarray  # (n,) index into `symbols`
    symbols: tuple[str, ...]

    def take(self, idx: np.ndarray) -> Dataset:
        return Dataset(
            self.features[idx],
            self.closes[idx],
            self.y[idx],
            self.time_ms[idx],
            self.label_time_ms[idx],
            self.symbol[idx],
            self.symbols,
        )

    def __len__(self) -> int:
        return len(self.y)


def build_dataset(data: Sequence[SymbolBars], features: FeatureConfig, horizon: int) -> Dataset:
    """Feature rows, close windows and forward labels of every symbol (no look-ahead)."""
    length = features.history_length
    parts: list[tuple[np.ndarray, ...]] = []
    for k, sym in enumerate(data):
        fm = compute_batch(sym.bars, features)
        n = len(fm.close)
        t = np.flatnonzero(fm.ready)
        t = t[t + horizon < n]
        if len(t) == 0:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(fm.close, length)[t - length + 1]
        y = (fm.close[t + horizon] > fm.close[t]).astype(np.float64)
        parts.append(
            (
                fm.values[t],
                np.array(windows),
                y,
                fm.open_time_ms[t],
                fm.open_time_ms[t + horizon],
                np.full(len(t), k),
            )
        )
    if not parts:
        raise ValueError(
            f"no usable bars: each symbol needs more than {features.warmup_bars() + horizon} bars"
        )
    cols = [np.concatenate([p[i] for p in parts]) for i in range(6)]
    return Dataset(*cols, symbols=tuple(s.symbol for s in data))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    validation_from_ms: int
    test_from_ms: int


def time_split(ds: Dataset, train_fraction: float, validation_fraction: float) -> Split:
    """Train / validation / test by bar time, purging samples whose label crosses a cut."""
    times = np.unique(ds.time_ms)
    cut1 = int(times[min(len(times) - 1, int(len(times) * train_fraction))])
    cut2 = int(times[min(len(times) - 1, int(len(times) * (train_fraction + validation_fraction)))])
    train = np.flatnonzero(ds.label_time_ms < cut1)
    val = np.flatnonzero((ds.time_ms >= cut1) & (ds.label_time_ms < cut2))
    test = np.flatnonzero(ds.time_ms >= cut2)
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(
            f"too little data to split: {len(train)} train, {len(val)} validation, "
            f"{len(test)} test samples"
        )
    return Split(train, val, test, cut1, cut2)


# ---- torch training ---------------------------------------------------------------------


def _fit_net(
    net: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    cfg: TrainConfig,
    seed: int,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """Adam on BCE; returns the state of the epoch with the lowest validation loss."""
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    yt = torch.from_numpy(y_train.astype(np.float32))
    xv = torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32))
    yv = torch.from_numpy(y_val.astype(np.float32))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    history: list[dict[str, float]] = []
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        net.eval()
        with torch.inference_mode():
            val_loss = float(loss_fn(net(xv), yv))
        history.append({"epoch": epoch + 1, "train_loss": total / len(xt), "val_loss": val_loss})
        if best is None or val_loss < best[0]:
            best = (val_loss, {k: v.detach().clone() for k, v in net.state_dict().items()})
    assert best is not None
    net.load_state_dict(best[1])
    return best[1], history


# ---- the whole run ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrainResult:
    bundle: ModelBundle
    seconds: float
    report: dict[str, Any]


def train(
    data: Sequence[SymbolBars],
    config: AIEngineConfig,
    out: Path | None = None,
    *,
    files: Sequence[str] = (),
) -> TrainResult:
    """Train on `data`, evaluate on its held-out tail, save to `out` (if given); `files`
    names the inputs in the metadata."""
    started, started_cpu = time.perf_counter(), time.process_time()
    tc = config.train
    nets = config.nets
    if config.features.history_length < nets.seq_len + 1:
        raise ValueError(f"history_length must be >= seq_len + 1 = {nets.seq_len + 1}")
    configure_torch(tc.threads)
    ds = build_dataset(data, config.features, tc.label_horizon)
    split = time_split(ds, tc.train_fraction, tc.validation_fraction)
    tr, va, te = ds.take(split.train), ds.take(split.validation), ds.take(split.test)

    scaler = Scaler.fit(tr.features)
    xs_tr, xs_va = scaler.transform(tr.features), scaler.transform(va.features)
    w, b = fit_logistic(xs_tr, tr.y, tc.logistic_l2)

    torch.manual_seed(tc.seed)
    mlp = MLPNet(len(config.features.names()), nets.mlp_hidden)
    mlp_state, mlp_hist = _fit_net(mlp, xs_tr, tr.y, xs_va, va.y, tc, tc.seed)
    torch.manual_seed(tc.seed + 1)
    cnn = CNNNet(nets.cnn_channels, nets.cnn_kernel)
    seq_tr = sequence_inputs(tr.closes, nets.seq_len)
    seq_va = sequence_inputs(va.closes, nets.seq_len)
    cnn_state, cnn_hist = _fit_net(cnn, seq_tr, tr.y, seq_va, va.y, tc, tc.seed + 1)

    state = {f"mlp.{k}": v.contiguous() for k, v in mlp_state.items()}
    state |= {f"cnn.{k}": v.contiguous() for k, v in cnn_state.items()}
    meta: dict[str, Any] = {
        "feature_version": FEATURE_VERSION,
        "feature_names": list(config.features.names()),
        "feature_config": config.features.model_dump(mode="json"),
        "nets": nets.model_dump(mode="json"),
        "label_horizon": tc.label_horizon,
        "scaler": {"mean": scaler.mean.tolist(), "std": scaler.std.tolist()},
        "logistic": {"w": w.tolist(), "b": b},
        "ensemble": {
            "models": list(config.models),
            "weights": list(config.weights),
            "calibration": {"kind": "none", "params": {}},
        },
    }
    # An uncalibrated engine over the fresh weights gives every model's P(up) in batch.
    draft = ModelBundle({**meta, "bundle_id": "draft"}, state)
    engine = SignalEngine(config.model_copy(update={"calibration_required": False}), draft)
    per_val, raw_val = engine.probabilities(va.features, va.closes)
    calibrator = fit_calibrator(tc.calibration, raw_val, va.y)
    meta["ensemble"]["calibration"] = {"kind": calibrator.kind, "params": calibrator.params()}

    per_test, raw_test = engine.probabilities(te.features, te.closes)
    cal_test = np.clip(calibrator.apply(raw_test), 0.0, 1.0)
    model_metrics = {m.name: metrics(per_test[:, i], te.y) for i, m in enumerate(engine.models)}
    for name in ("mlp", "cnn", "logistic"):
        if name not in model_metrics:  # trained but not in the ensemble: report anyway
            model = getattr(draft, name)(config.vote_band)
            model_metrics[name] = metrics(model.predict_proba(te.features, te.closes), te.y)
    table = reliability_table(cal_test, te.y, tc.reliability_bins)
    raw_table = reliability_table(pool(per_test, config.weights), te.y, tc.reliability_bins)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - started_cpu
    meta["training"] = {
        "seed": tc.seed,
        "config": tc.model_dump(mode="json"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": tc.threads,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "data": {
            "files": list(files),
            "symbols": [
                {
                    "symbol": s.symbol,
                    "interval": s.interval,
                    "source": s.source,
                    "bars": len(s.bars),
                    "from_ms": s.bars[0].open_time_ms if s.bars else None,
                    "to_ms": s.bars[-1].open_time_ms if s.bars else None,
                }
                for s in data
            ],
            "from_ms": int(ds.time_ms.min()),
            "to_ms": int(ds.label_time_ms.max()),
        },
        "split": {
            "train": len(tr),
            "validation": len(va),
            "test": len(te),
            "validation_from_ms": split.validation_from_ms,
            "test_from_ms": split.test_from_ms,
            "purged": int(len(ds) - len(tr) - len(va) - len(te)),
        },
        "epochs": {"mlp": mlp_hist, "cnn": cnn_hist},
    }
    meta["metrics"] = {
        "test": {
            **model_metrics,
            "ensemble_raw": metrics(pool(per_test, config.weights), te.y),
            "ensemble": metrics(cal_test, te.y),
        },
        "validation_ensemble_raw": metrics(raw_val, va.y),
        "validation_per_model_mean_p": [float(x) for x in per_val.mean(axis=0)],
    }
    deciles = reliability_table(cal_test, te.y, tc.reliability_bins, strategy="quantile")
    meta["reliability"] = {
        "calibrated": [asdict(r) for r in table],
        "calibrated_quantile": [asdict(r) for r in deciles],
        "raw": [asdict(r) for r in raw_table],
        "ece_calibrated": expected_calibration_error(table),
        "ece_raw": expected_calibration_error(raw_table),
    }
    bundle = make_bundle(meta, state)
    if out is not None:
        save_bundle(out, bundle)
    return TrainResult(bundle=bundle, seconds=seconds, report=bundle.meta)


# ---- command line ---------------------------------------------------------------------


def format_report(result: TrainResult) -> str:
    """The human summary `quantum train` prints."""
    r = result.report
    t = r["training"]
    lines = [
        f"trained bundle {result.bundle.bundle_id} in {result.seconds:.1f} s "
        f"({t['cpu_seconds']:.1f} s CPU) "
        f"(torch {t['torch']}, seed {t['seed']}, {t['threads']} thread(s))",
        f"samples: {t['split']['train']} train, {t['split']['validation']} validation, "
        f"{t['split']['test']} test, {t['split']['purged']} purged; "
        f"label: close {r['label_horizon']} bars ahead > close",
        "test metrics:",
        f"  {'model':<16}{'log_loss':>10}{'brier':>9}{'acc':>8}{'auc':>8}",
    ]
    for name, m in r["metrics"]["test"].items():
        lines.append(
            f"  {name:<16}{m['log_loss']:>10.4f}{m['brier']:>9.4f}"
            f"{m['accuracy']:>8.3f}{m['auc']:>8.3f}"
        )
    lines.append(
        f"reliability (calibrated ensemble, test; ECE {r['reliability']['ece_calibrated']:.4f}, "
        f"raw {r['reliability']['ece_raw']:.4f}):"
    )
    for title, key in (
        ("equal-width bins", "calibrated"),
        ("quantile bins", "calibrated_quantile"),
    ):
        lines.append(f"  {title}:")
        lines.append(f"  {'bin':<18}{'count':>7}{'predicted':>11}{'observed':>10}")
        for b in r["reliability"][key]:
            if b["count"]:
                lines.append(
                    f"  [{b['lo']:.3f}, {b['hi']:.3f}]{b['count']:>7}"
                    f"{b['mean_predicted']:>11.3f}{b['observed']:>10.3f}"
                )
    return "\n".join(lines)


def run(args: argparse.Namespace, config: AIEngineConfig) -> int:
    updates = {
        k: v
        for k, v in (
            ("seed", args.seed),
            ("epochs", args.epochs),
            ("label_horizon", args.horizon),
            ("calibration", args.calibration),
        )
        if v is not None
    }
    if updates:
        config = config.model_copy(update={"train": config.train.model_copy(update=updates)})
    files = list(args.data) if args.data else sample_files()
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing or not files:
        print(f"quantum train: no such file(s): {', '.join(missing) or '(none)'}", file=sys.stderr)
        return 2
    out = args.out or resolve_weights_path(config.weights_path)
    result = train(load_kline_files(files), config, out, files=[Path(f).name for f in files])
    print(json.dumps(result.report, indent=1) if args.json else format_report(result))
    print(f"weights: {out}")
    return 0


if __name__ == "__main__":
    from agents.ai_engine.train_cli import main

    sys.exit(main())
