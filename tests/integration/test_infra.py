"""The no-Docker broker and registry (`infra.local`) against real JVMs.

Each test runs its own instance: a tmp state dir and free ports, so the session broker
(default ports and state dir) is never touched. The downloaded jars are shared through
the dist cache (`infra.dist.dist_dir`), so only the first run anywhere pays the fetch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import cli, local
from quantum.app.settings import Settings
from quantum.config import InfraSettings
from quantum.polling import wait_until
from quantum.processes import running

pytestmark = pytest.mark.broker


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; held together so they are distinct."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (a state dir is unique to one instance)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def own(tmp_path: Path) -> Iterator[InfraSettings]:
    """An instance of our own; always stopped afterwards, whatever the test did."""
    kafka_port, controller_port, registry_port = _free_ports(3)
    settings = InfraSettings(
        state_dir=tmp_path / "state",
        kafka_port=kafka_port,
        controller_port=controller_port,
        registry_port=registry_port,
        kafka_heap="256m",
        start_registry=False,
        start_timeout_s=90,
    )
    yield settings
    local.down(settings)
    assert _processes_mentioning(str(settings.state_dir)) == []


def test_up_is_idempotent_and_down_leaves_no_process(own: InfraSettings) -> None:
    results: list[local.Endpoints] = []
    errors: list[BaseException] = []

    def call_up() -> None:
        try:
            results.append(local.up(own))
        except BaseException as exc:
            errors.append(exc)

    # Two concurrent `up`s: the state-dir lock lets one start the broker, the other reuses it.
    threads = [threading.Thread(target=call_up) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert results[0] == results[1] == local.Endpoints(f"127.0.0.1:{own.kafka_port}", None)

    first = local.status(own)
    assert first.healthy, first.detail
    assert first.broker_pid is not None
    assert first.registry_pid is None
    assert local.up(own).bootstrap == first.bootstrap
    assert local.status(own).broker_pid == first.broker_pid
    assert _processes_mentioning(str(own.state_dir)) == [first.broker_pid]

    local.down(own)
    assert not running(first.broker_pid)
    assert _processes_mentioning(str(own.state_dir)) == []
    after = local.status(own)
    assert not after.healthy
    assert after.broker_pid is None
    assert not (own.state_dir / "broker.pid").exists()
    local.down(own)  # nothing runs: still fine


def test_killed_broker_is_replaced_and_purge_keeps_the_marker(own: InfraSettings) -> None:
    local.up(own)
    old_pid = local.status(own).broker_pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    # the signal is delivered asynchronously: wait for the pid to look dead; the stale pid
    # file must then not pass for a broker. (Its JVM threads may still hold the port a
    # moment longer: `up` gives a dying process PORT_GRACE_S, which failed once in CI.)
    wait_until(lambda: not running(old_pid), 30, f"broker pid {old_pid} to die", poll_s=0.02)
    assert not local.status(own).healthy

    local.up(own)
    new = local.status(own)
    assert new.healthy, new.detail
    assert new.broker_pid not in (None, old_pid)

    local.down(own, purge=True)
    assert not (own.state_dir / "kafka").exists()
    assert (own.state_dir / local.MARKER).is_file()


def test_registry_serves_ccompat_with_backward_rule(own: InfraSettings) -> None:
    endpoints = local.up(own, with_registry=True)
    assert endpoints.registry_url == f"http://127.0.0.1:{own.registry_port}/apis/ccompat/v7"
    st = local.status(own)
    assert st.healthy, st.detail
    assert st.registry_pid is not None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{endpoints.registry_url}/subjects", timeout=10) as resp:
        assert json.load(resp) == []

    def register(schema: dict[str, object]) -> int:
        body = json.dumps({"schema": json.dumps(schema)}).encode()
        req = urllib.request.Request(
            f"{endpoints.registry_url}/subjects/s-value/versions",
            data=body,
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        try:
            with opener.open(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    fields = [{"name": "a", "type": "string"}]
    assert register({"type": "record", "name": "R", "fields": fields}) == 200
    # A new field without a default breaks BACKWARD: the global rule must refuse it.
    added = [*fields, {"name": "b", "type": "int"}]
    assert register({"type": "record", "name": "R", "fields": added}) == 409

    local.down(own)
    assert not running(st.registry_pid)
    assert _processes_mentioning(str(own.state_dir)) == []


def test_taken_port_is_named(own: InfraSettings) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", own.kafka_port))
        squatter.listen()
        with pytest.raises(local.InfraError, match=f"port {own.kafka_port} is taken"):
            local.up(own)
    assert not (own.state_dir / "broker.pid").exists()


def test_missing_java_is_named(own: InfraSettings, tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(local.InfraError, match="java not found on PATH"):
        local.up(own)


def test_missing_mvn_is_named_when_a_fetch_is_needed(
    own: InfraSettings, tmp_path: Path, monkeypatch
) -> None:
    import shutil

    java = shutil.which("java")
    assert java
    only_java = tmp_path / "only-java"
    only_java.mkdir()
    (only_java / "java").symlink_to(java)
    monkeypatch.setenv("PATH", str(only_java))
    monkeypatch.setenv("QT_INFRA_DIST_DIR", str(tmp_path / "fresh-dist"))
    with pytest.raises(local.InfraError, match="mvn not found"):
        local.up(own)


def test_down_refuses_to_purge_a_foreign_dir(tmp_path: Path) -> None:
    foreign = tmp_path / "not-ours"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(local.InfraError, match="refusing to purge"):
        local.down(InfraSettings(state_dir=foreign), purge=True)
    assert (foreign / "precious.txt").exists()
    local.down(InfraSettings(state_dir=tmp_path / "missing"), purge=True)


def test_cli_status_and_down(own: InfraSettings, capsys) -> None:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers())
    settings = Settings(infra=own)

    args = parser.parse_args(["infra", "status"])
    assert args.func(args, settings) == 1
    assert "not running" in capsys.readouterr().out

    args = parser.parse_args(["infra", "down", "--purge"])
    assert args.func(args, settings) == 0
    assert "stopped" in capsys.readouterr().out
