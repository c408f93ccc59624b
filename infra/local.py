"""A real single-node Kafka (KRaft) and Apicurio schema registry without Docker.

Why: the platform's tests and demos need a real broker with transactions and a real
registry with compatibility checks; this machine (and CI) has Java and Maven but no
Docker engine. The JVMs run detached from the caller, so `up` in one process and
`down` in another work; pid files in `state_dir` say what we started.

Layout: shared read-only artifacts live in the dist cache (see `infra.dist.dist_dir`);
each instance keeps its data, logs and pid files in its own `state_dir`.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from infra import dist
from quantum.config import InfraSettings
from quantum.processes import command_line, running

MARKER = ".quantum-infra"  # only a state dir holding this file is ever purged
_POLL_S = 0.1
_STOP_TIMEOUT_S = 30.0
# Popen handles of processes this Python process started: lets `_alive` reap them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Endpoints:
    bootstrap: str  # "127.0.0.1:19092"
    registry_url: str | None  # "http://127.0.0.1:18081/apis/ccompat/v7", None if not running


@dataclass(frozen=True)
class Status:
    healthy: bool  # our broker answers metadata (and our registry is ready if it was started)
    broker_pid: int | None
    registry_pid: int | None
    bootstrap: str
    registry_url: str | None
    detail: str


class InfraError(RuntimeError):
    """Something the user can fix: a missing tool, a taken port, a broker that won't start."""


class _Exited(InfraError):
    """The process we waited for died; `reused` when this `up` call had not started it."""

    def __init__(self, pid: int, message: str) -> None:
        super().__init__(message)
        self.pid = pid
        self.reused = False


@dataclass(frozen=True)
class _Paths:
    """Every file of one instance, derived from its state dir."""

    state_dir: Path

    @property
    def lock(self) -> Path:
        return self.state_dir / "infra.lock"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def server_properties(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.kafka_dir / "log4j2.properties"

    @property
    def data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def broker_pid(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def broker_log(self) -> Path:
        return self.state_dir / "broker.log"

    @property
    def registry_dir(self) -> Path:
        return self.state_dir / "registry"

    @property
    def registry_pid(self) -> Path:
        return self.state_dir / "registry.pid"

    @property
    def registry_log(self) -> Path:
        return self.state_dir / "registry.log"

    @property
    def broker_tag(self) -> str:
        """A string only our broker's command line contains (guards against pid reuse)."""
        return str(self.server_properties)

    @property
    def registry_tag(self) -> str:
        return f"-Dquantum.infra.state={self.state_dir}"


def _paths(settings: InfraSettings) -> _Paths:
    return _Paths(Path(settings.state_dir).expanduser().resolve())


def _bootstrap(settings: InfraSettings) -> str:
    return f"127.0.0.1:{settings.kafka_port}"


def _registry_url(settings: InfraSettings) -> str:
    return f"http://127.0.0.1:{settings.registry_port}/apis/ccompat/v7"


# --- processes ------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie counts as gone)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    return running(pid)


def _rss_mb(pid: int) -> float | None:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def _our_pid(pid_file: Path, tag: str) -> int | None:
    """The pid in `pid_file` if that process is alive and is the one we started; else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if _alive(pid) and tag in command_line(pid):
        return pid
    return None


def _spawn(cmd: list[str], *, cwd: Path, log: Path, pid_file: Path) -> int:
    """Start `cmd` in its own session (it outlives us and our Ctrl-C), output to `log`.

    The log is appended to (the previous run's end explains a crash), rotated at 20 MB.
    """
    with suppress(OSError):
        if log.stat().st_size > 20 * 1024 * 1024:
            log.replace(log.with_name(log.name + ".1"))
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal the process group we created for it (the JVM leads it), else the process."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, deadline: float) -> bool:
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _stop(pids: list[int]) -> None:
    """SIGTERM all (a clean Kafka shutdown), SIGKILL whatever outlives the deadline."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    for pid in pids:
        if not _wait_gone(pid, deadline):
            _signal(pid, signal.SIGKILL)
            _wait_gone(pid, time.monotonic() + 10)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# --- checks ---------------------------------------------------------------------------


def _find_java() -> str:
    """Absolute path of a Java 17+ `java`, or an InfraError saying what is missing."""
    java = shutil.which("java")
    if not java:
        raise InfraError("java not found on PATH (need Java 17+)")
    proc = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < 17:
            raise InfraError(f"{java} is Java {major}; need Java 17+")
    return java


def _port_free(port: int) -> bool:
    """Can we listen on 127.0.0.1:port? (SO_REUSEADDR, as Java does: TIME_WAIT is no owner.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


PORT_GRACE_S = 10.0  # a broker killed a moment ago may still hold its ports while it exits


def _check_ports(ports: dict[str, int], grace_s: float = PORT_GRACE_S) -> None:
    """Refuse a port another process holds; a process that is exiting (the JVM's threads
    are torn down after its pid already looks dead) gets `grace_s` to let go first."""
    deadline = time.monotonic() + grace_s
    for name, port in ports.items():
        while not _port_free(port) and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the port until the deadline
        if not _port_free(port):
            raise InfraError(
                f"port {port} is taken by another process (needed as {name}; "
                f"free it or set QT_INFRA__{name.upper()})"
            )


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _broker_answers(bootstrap: str, timeout: float) -> bool:
    """One AdminClient metadata request; True when it lists at least one broker."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.connection.setup.timeout.ms": 1000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
            "log_level": 0,  # connection-refused chatter while the broker starts is expected
        }
    )
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return False


def _http_ok(url: str, timeout: float) -> bool:
    """GET `url` directly (never through an HTTP proxy from the environment)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _registry_ready(port: int, timeout: float) -> bool:
    return _http_ok(f"http://127.0.0.1:{port}/health/ready", timeout)


# --- the broker -----------------------------------------------------------------------

_LOG4J = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.config.name = org.apache.kafka.common.config
logger.config.level = WARN
logger.utils.name = org.apache.kafka.common.utils.AppInfoParser
logger.utils.level = WARN
"""


def _server_properties(settings: InfraSettings, paths: _Paths) -> str:
    """A single-node KRaft config where transactions and consumer groups work at RF 1."""
    port, cport = settings.kafka_port, settings.controller_port
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(paths.data),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # After a SIGKILL the restarted node waits out its old session before it registers.
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "6000",
        # Two cores: fewer threads and a smaller cleaner buffer keep the JVM small.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _cluster_id() -> str:
    """A Kafka cluster id (url-safe base64 of 16 random bytes) without a JVM round trip."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _prepare_broker(settings: InfraSettings, paths: _Paths, java: str, libs: Path) -> list[str]:
    """Write the config, format storage if it never was, return the broker command line."""
    paths.kafka_dir.mkdir(parents=True, exist_ok=True)
    paths.server_properties.write_text(_server_properties(settings, paths))
    paths.log4j.write_text(_LOG4J)
    classpath = f"{libs}/*"
    log4j = f"-Dlog4j2.configurationFile={paths.log4j}"
    if not (paths.data / "meta.properties").exists():
        tool = [java, log4j, "-cp", classpath, "kafka.tools.StorageTool", "format"]
        fmt = subprocess.run(
            [*tool, "-t", _cluster_id(), "-c", str(paths.server_properties), "--ignore-formatted"],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise InfraError(f"formatting kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
    return [
        java,
        f"-Xmx{settings.kafka_heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-Djava.awt.headless=true",
        log4j,
        "-cp",
        classpath,
        "kafka.Kafka",
        str(paths.server_properties),
    ]


def _wait_until(
    ready: Callable[[float], bool],
    pid: int,
    deadline: float,
    what: str,
    log: Path,
) -> None:
    """Poll `ready` until it holds; fail early if `pid` dies, with the log's tail on failure."""
    while True:
        if not _alive(pid):
            message = f"{what} (pid {pid}) exited while starting; {log} ends:\n{_tail(log)}"
            raise _Exited(pid, message)
        remaining = deadline - time.monotonic()
        if ready(max(0.5, min(2.0, remaining))):
            return
        if time.monotonic() >= deadline:
            raise InfraError(
                f"{what} (pid {pid}) did not become ready in time; {log} ends:\n{_tail(log)}"
            )
        time.sleep(_POLL_S)


def _broker_ready(settings: InfraSettings) -> Callable[[float], bool]:
    bootstrap = _bootstrap(settings)
    return lambda timeout: _port_open(settings.kafka_port) and _broker_answers(bootstrap, timeout)


def _registry_cmd(settings: InfraSettings, paths: _Paths, java: str, home: Path) -> list[str]:
    return [
        java,
        "-Xmx128m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Dquarkus.http.host=127.0.0.1",
        f"-Dquarkus.http.port={settings.registry_port}",
        "-Dapicurio.rules.global.compatibility=BACKWARD",
        "-Dquarkus.http.access-log.enabled=false",
        paths.registry_tag,
        "-jar",
        str(home / dist.REGISTRY_JAR),
    ]


# --- the API --------------------------------------------------------------------------


@contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    """One `up`/`down` at a time per state dir, across processes."""
    with paths.lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(settings: InfraSettings, *, with_registry: bool | None = None) -> Endpoints:
    """Start the broker (and registry), or reuse ours if it already runs; wait until ready."""
    want_registry = settings.start_registry if with_registry is None else with_registry
    paths = _paths(settings)
    deadline = time.monotonic() + settings.start_timeout_s
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    (paths.state_dir / MARKER).touch()  # marks the dir as ours: `down --purge` may empty it
    with _locked(paths):
        try:
            return _up_locked(settings, paths, want_registry, deadline)
        except _Exited as exc:
            if not exc.reused:
                raise
        # A process we meant to reuse died under us (e.g. just killed): start afresh, once.
        return _up_locked(settings, paths, want_registry, deadline)


def _up_locked(
    settings: InfraSettings, paths: _Paths, want_registry: bool, deadline: float
) -> Endpoints:
    broker_pid = _our_pid(paths.broker_pid, paths.broker_tag)
    registry_pid = _our_pid(paths.registry_pid, paths.registry_tag)
    need_broker = broker_pid is None
    need_registry = want_registry and registry_pid is None
    started: list[int] = []
    try:
        if need_broker or need_registry:
            java = _find_java()
            ports = {}
            if need_broker:
                ports["kafka_port"] = settings.kafka_port
                ports["controller_port"] = settings.controller_port
            if need_registry:
                ports["registry_port"] = settings.registry_port
            _check_ports(ports)
            libs, home = _fetch(need_broker, need_registry)
            # The registry first: it is the slower JVM, and it starts while storage formats.
            if home is not None:
                paths.registry_dir.mkdir(parents=True, exist_ok=True)
                registry_pid = _spawn(
                    _registry_cmd(settings, paths, java, home),
                    cwd=paths.registry_dir,
                    log=paths.registry_log,
                    pid_file=paths.registry_pid,
                )
                started.append(registry_pid)
            if libs is not None:
                cmd = _prepare_broker(settings, paths, java, libs)
                broker_pid = _spawn(
                    cmd, cwd=paths.kafka_dir, log=paths.broker_log, pid_file=paths.broker_pid
                )
                started.append(broker_pid)
        assert broker_pid is not None
        _wait_until(_broker_ready(settings), broker_pid, deadline, "kafka", paths.broker_log)
        if registry_pid is not None:
            port = settings.registry_port
            _wait_until(
                lambda t: _registry_ready(port, t),
                registry_pid,
                deadline,
                "schema registry",
                paths.registry_log,
            )
            if not _http_ok(f"{_registry_url(settings)}/subjects", 10.0):
                raise InfraError(
                    f"schema registry is ready but {_registry_url(settings)}/subjects "
                    "does not answer 200"
                )
    except BaseException as exc:
        if isinstance(exc, _Exited):
            exc.reused = exc.pid not in started
        # Leave nothing half-started behind: stop what this call launched.
        _stop(started)
        for pid_file in (paths.broker_pid, paths.registry_pid):
            if _our_pid(pid_file, "") is None:
                pid_file.unlink(missing_ok=True)
        raise
    return Endpoints(_bootstrap(settings), _registry_url(settings) if registry_pid else None)


def _fetch(need_broker: bool, need_registry: bool) -> tuple[Path | None, Path | None]:
    """Both artifacts at once (each is a Maven round trip the first time)."""
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            libs = pool.submit(dist.ensure_kafka_libs) if need_broker else None
            home = pool.submit(dist.ensure_registry) if need_registry else None
            return (
                libs.result() if libs else None,
                home.result() if home else None,
            )
    except dist.FetchError as exc:
        raise InfraError(str(exc)) from exc


def down(settings: InfraSettings, *, purge: bool = False) -> None:
    """Stop what `up` started; `purge` also deletes this instance's data (not the dist cache)."""
    paths = _paths(settings)
    if not (paths.state_dir / MARKER).is_file():
        # `up` never ran here, so nothing of ours runs; never empty a dir we did not make.
        if purge and paths.state_dir.is_dir() and any(paths.state_dir.iterdir()):
            raise InfraError(f"refusing to purge {paths.state_dir}: no {MARKER} marker in it")
        return
    with _locked(paths):
        pids = [
            pid
            for pid in (
                _our_pid(paths.registry_pid, paths.registry_tag),
                _our_pid(paths.broker_pid, paths.broker_tag),
            )
            if pid is not None
        ]
        _stop(pids)
        paths.broker_pid.unlink(missing_ok=True)
        paths.registry_pid.unlink(missing_ok=True)
        if purge:
            _purge(paths)


def _purge(paths: _Paths) -> None:
    """Delete the instance data (the caller checked MARKER), keeping the shared dist cache."""
    keep = {MARKER, paths.lock.name}
    shared = dist.dist_dir().resolve()
    for entry in paths.state_dir.iterdir():
        if entry.name in keep or entry.resolve() == shared:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def kill_broker(settings: InfraSettings) -> int:
    """SIGKILL our running broker, as a crash would, and wait until it is gone (reaped, if
    this process started it). Returns its pid; `up` starts a new one on the same log
    directory. For fault tests (tests/chaos/test_governor_faults.py)."""
    paths = _paths(settings)
    pid = _our_pid(paths.broker_pid, paths.broker_tag)
    if pid is None:
        raise InfraError(f"no broker of ours runs (state dir {paths.state_dir})")
    _signal(pid, signal.SIGKILL)
    if not _wait_gone(pid, time.monotonic() + _STOP_TIMEOUT_S):
        raise InfraError(f"the broker (pid {pid}) outlived SIGKILL")
    return pid


def status(settings: InfraSettings) -> Status:
    """What runs and whether it answers; never starts or stops anything."""
    paths = _paths(settings)
    bootstrap = _bootstrap(settings)
    broker_pid = _our_pid(paths.broker_pid, paths.broker_tag)
    registry_pid = _our_pid(paths.registry_pid, paths.registry_tag)
    lines: list[str] = []
    healthy = True

    if broker_pid is None:
        healthy = False
        taken = "" if _port_free(settings.kafka_port) else "; the port is in use by another process"
        lines.append(f"kafka: not running (state dir {paths.state_dir}){taken}")
    elif _port_open(settings.kafka_port) and _broker_answers(bootstrap, 3.0):
        lines.append(f"kafka: pid {broker_pid} answering at {bootstrap}{_rss(broker_pid)}")
    else:
        healthy = False
        lines.append(f"kafka: pid {broker_pid} runs but does not answer at {bootstrap}")

    url: str | None = None
    if registry_pid is not None:
        url = _registry_url(settings)
        if _registry_ready(settings.registry_port, 3.0):
            lines.append(f"registry: pid {registry_pid} ready at {url}{_rss(registry_pid)}")
        else:
            healthy = False
            lines.append(f"registry: pid {registry_pid} runs but is not ready at {url}")
    elif paths.registry_pid.exists():
        healthy = False
        lines.append(f"registry: died (stale {paths.registry_pid})")
    else:
        lines.append("registry: not running")
    return Status(healthy, broker_pid, registry_pid, bootstrap, url, "\n".join(lines))


def _rss(pid: int) -> str:
    rss = _rss_mb(pid)
    return f" (rss {rss:.0f} MB)" if rss is not None else ""
