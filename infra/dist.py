"""Fetch the broker jars and the registry server once, into a cache shared by every instance.

The artifacts are read-only, so one copy serves the default broker, the test brokers
with their own state dirs and any other instance: only the fetch is locked.
Location: `QT_INFRA_DIST_DIR`, else `<default state dir>/dist` (see `dist_dir`).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from quantum.config import default_state_dir

POM = Path(__file__).parent / "pom.xml"
REGISTRY_VERSION = "3.0.9"
REGISTRY_ARTIFACT = f"io.apicurio:apicurio-registry-app:{REGISTRY_VERSION}:tar.gz:all"
REGISTRY_JAR = f"apicurio-registry-app-{REGISTRY_VERSION}-runner.jar"
# Maven 3.8.7's default dependency plugin; newer ones fail on Apicurio's missing parent pom.
DEPENDENCY_GET = "org.apache.maven.plugins:maven-dependency-plugin:2.8:get"
_COMPLETE = ".complete"


class FetchError(RuntimeError):
    """A tool is missing or Maven failed; the message says which."""


def kafka_version() -> str:
    """The pinned Kafka version, read from the pom so there is one place to change it."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise FetchError(f"no <kafka.version> in {POM}")
    return match.group(1).strip()


def dist_dir() -> Path:
    """The shared artifact cache (kept by `down --purge`, which only drops instance data)."""
    override = os.environ.get("QT_INFRA_DIST_DIR")
    return Path(override).expanduser() if override else default_state_dir() / "dist"


def kafka_libs() -> Path:
    return dist_dir() / f"kafka-{kafka_version()}" / "libs"


def registry_home() -> Path:
    return dist_dir() / f"apicurio-registry-{REGISTRY_VERSION}"


def find_tool(name: str, hint: str) -> str:
    """Absolute path of `name` on the current PATH, or a FetchError naming what is missing."""
    found = shutil.which(name)
    if not found:
        raise FetchError(f"{name} not found on PATH ({hint})")
    return found


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise fetches across processes: two `up`s must not unpack into the same dir."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".fetch.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_mvn(args: list[str], what: str) -> None:
    mvn = find_tool("mvn", "need Maven 3.8+ to fetch the Kafka and registry artifacts once")
    proc = subprocess.run([mvn, "-q", "-B", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise FetchError(f"mvn failed fetching {what} (exit {proc.returncode}):\n{tail}")


def ensure_kafka_libs() -> Path:
    """The Kafka jars from Maven Central (`mvn dependency:copy-dependencies` on infra/pom.xml)."""
    libs = kafka_libs()
    if (libs / _COMPLETE).exists():
        return libs
    with _locked(dist_dir()):
        if (libs / _COMPLETE).exists():
            return libs
        staging = libs.with_name(f"libs.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        _run_mvn(
            ["-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
            f"kafka {kafka_version()}",
        )
        if not any(staging.glob("kafka_2.13-*.jar")):
            raise FetchError(f"mvn ran but no kafka jar appeared in {staging}")
        (staging / _COMPLETE).write_text("")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


def ensure_registry() -> Path:
    """The Apicurio Registry server (prebuilt archive on Maven Central), unpacked once."""
    home = registry_home()
    if (home / _COMPLETE).exists():
        return home
    with _locked(dist_dir()):
        if (home / _COMPLETE).exists():
            return home
        staging = home.with_name(f"{home.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        archive = staging / "registry.tar.gz"
        _run_mvn(
            [
                DEPENDENCY_GET,
                f"-Dartifact={REGISTRY_ARTIFACT}",
                "-Dtransitive=false",
                f"-Ddest={archive}",
            ],
            f"apicurio registry {REGISTRY_VERSION}",
        )
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        archive.unlink()
        if not (staging / REGISTRY_JAR).is_file():
            raise FetchError(f"the registry archive has no {REGISTRY_JAR}")
        (staging / _COMPLETE).write_text("")
        shutil.rmtree(home, ignore_errors=True)
        staging.rename(home)
    return home
