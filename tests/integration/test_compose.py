"""docker-compose.kafka.yml is valid Compose and wires what the deployment needs.

Only `config` runs (it parses, interpolates and validates without a Docker engine);
nothing is built or started here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"
SERVICES = {"kafka", "registry", "topology", "governor", "agents"}


def _compose_command() -> list[str]:
    """`docker compose` if that plugin answers, else the standalone `docker-compose`."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        return [standalone]
    pytest.skip("neither `docker compose` nor `docker-compose` is installed")


def _config(*extra: str) -> str:
    cmd = [*_compose_command(), "-f", str(COMPOSE_FILE), "config", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def test_compose_file_validates_and_has_the_services() -> None:
    assert set(_config("--services").split()) == SERVICES


def test_compose_pins_versions_and_wires_the_workers() -> None:
    rendered = _config()
    assert "image: apache/kafka:4.1.1" in rendered
    assert "image: apicurio/apicurio-registry:3.0.9" in rendered
    assert re.search(r"APICURIO_RULES_GLOBAL_COMPATIBILITY: ['\"]?BACKWARD", rendered)
    for key in ("TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "TRANSACTION_STATE_LOG_MIN_ISR"):
        assert re.search(rf"KAFKA_{key}: ['\"]?1['\"]?\n", rendered), key
    # Every Python worker talks to the in-network broker and registry.
    assert rendered.count("KAFKA_BOOTSTRAP: kafka:9092") == 3
    assert rendered.count("SCHEMA_REGISTRY_URL: http://registry:8080/apis/ccompat/v7") == 3
    assert rendered.count("condition: service_completed_successfully") == 2
    assert rendered.count("condition: service_healthy") >= 4
    for words in (("topology", "apply"), ("governor", "run"), ("--agents", "passthrough,clock")):
        assert re.search(r"-\s+" + r"\s+-\s+".join(map(re.escape, words)), rendered), words
