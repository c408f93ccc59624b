"""Serde throughput: encode, decode and decode+validate per second, per record type.

After warm-up the serde makes no registry call, so the in-memory mock registry measures the
same code path as a real one. Run: `python -m bench.serde [seconds per case]`.
Writes bench/results/serde.json with machine info.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient

from bench.machine import machine
from quantum.serde import AvroSerde
from quantum.validation import validate
from tests.unit.test_serde import sample_records

ROOT = Path(__file__).resolve().parents[1]

CASES = ("market.ticks.avsc", "portfolio.avsc", "portfolio.decisions.avsc", "dead_letter.avsc")


def rate(fn, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        n += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def measure(serde: AvroSerde, schema_file: str, value: dict, seconds: float) -> dict:
    data = serde.encode("bench", value, schema_file=schema_file)  # warm-up: registers once

    def enc() -> None:
        serde.encode("bench", value, schema_file=schema_file)

    def dec() -> None:
        serde.decode("bench", data, schema_file=schema_file)

    def dec_val() -> None:
        validate(schema_file, serde.decode("bench", data, schema_file=schema_file))

    return {
        "bytes": len(data),
        "encode_per_s": round(rate(enc, seconds)),
        "decode_per_s": round(rate(dec, seconds)),
        "decode_validate_per_s": round(rate(dec_val, seconds)),
    }


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    serde = AvroSerde(SchemaRegistryClient.new_client({"url": "mock://bench"}))
    samples = sample_records()
    results = {}
    for schema_file in CASES:
        results[schema_file] = measure(serde, schema_file, samples[schema_file], seconds)
        print(schema_file, results[schema_file])
    out = {
        "benchmark": "quantum.serde AvroSerde, single thread, mock registry after warm-up",
        "seconds_per_case": seconds,
        "machine": machine(
            fastavro=fastavro.__version__,
            fastavro_compiled=not fastavro.schemaless_reader.__module__.endswith("_py"),
        ),
        "results": results,
    }
    target = ROOT / "bench" / "results" / "serde.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
