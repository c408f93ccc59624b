"""Where a benchmark's numbers came from: every result file records this beside them."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import confluent_kafka

KAFKA_BROKER = "4.1.1 (single node, KRaft, infra/)"


def machine(**extra: object) -> dict[str, object]:
    """Platform, CPU, Python and client versions, plus what a benchmark adds (`extra`)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.version(),
        "librdkafka": confluent_kafka.libversion()[0],
        **extra,
    }
