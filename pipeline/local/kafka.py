"""A real Apache Kafka broker (KRaft, no ZooKeeper) running on 127.0.0.1 from jars in a lib dir.

`LocalKafka` is one node: its node id, client and controller ports, directory and quorum voters are
parameters, so a cluster is several instances sharing a `cluster_id` and a `voters` string. Today the
CLI and the tests run one node that is both broker and controller.

Directory layout: `server.properties`, `cluster-id`, `data/` (log.dirs, formatted once),
`logs/kafka.log` (the JVM's stdout/stderr), `kafka.pid`.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from pipeline.errors import UserFacingError
from pipeline.local import process
from pipeline.local.kafka_jars import LOG4J_PROPERTIES, ensure_kafka_jars
from pipeline.local.service import LocalService

JVM_FLAGS = ("-Xms256m", "-Xmx512m", "-Djava.awt.headless=true")


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes as 22 characters of unpadded base64url, never starting with
    '-' (as Kafka's own `Uuid.randomUuid`: such an id reads as an option on a command line)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """True if the broker at `bootstrap` answers a metadata request (an admin client lists topics)."""
    host, _, port = bootstrap.rpartition(":")
    if not process.port_accepts(int(port), host):
        return False  # skip the client's own connect retries while nothing listens yet
    from aiokafka.admin import AIOKafkaAdminClient

    async def list_topics() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout)
            await asyncio.wait_for(admin.list_topics(), timeout)
        finally:
            await admin.close()

    try:
        asyncio.run(list_topics())
    except Exception:
        return False
    return True


class LocalKafka(LocalService):
    """One KRaft node on `host` with a PLAINTEXT listener on `port` and a CONTROLLER one on
    `controller_port` (default `port + 1`).

    `voters` defaults to this node alone; `extra_properties` override or add broker settings
    (a multi-node cluster would raise the replication factors there).
    """

    name = "kafka"

    def __init__(
        self,
        directory: Path,
        lib_dir: Path,
        port: int = 9092,
        controller_port: int | None = None,
        node_id: int = 1,
        voters: str | None = None,
        cluster_id: str | None = None,
        extra_properties: Mapping[str, str] | None = None,
        tied: bool = False,
    ):
        super().__init__(directory, tied=tied)
        self.lib_dir = Path(lib_dir).resolve()
        self.host = process.LOCALHOST
        self.port = port
        self.controller_port = port + 1 if controller_port is None else controller_port
        self.node_id = node_id
        self.voters = voters or f"{node_id}@{self.host}:{self.controller_port}"
        self._cluster_id = cluster_id
        self.extra_properties = dict(extra_properties or {})
        self.properties_path = self.directory / "server.properties"
        self.data_dir = self.directory / "data"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.bootstrap

    def ports(self) -> dict[str, int]:
        return {"--port": self.port, "--controller-port": self.controller_port}

    def properties(self) -> dict[str, str]:
        """The broker configuration: single-node replication settings, then `extra_properties` on top."""
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "12",
            "auto.create.topics.enable": "true",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "12",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "12",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Keep a developer machine's broker light: few threads, small segments, a small cleaner buffer
            # (its 128 MiB default would take a quarter of the 512 MiB heap).
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.retention.hours": "72",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        }
        props.update(self.extra_properties)
        return props

    def cluster_id(self) -> str:
        """The given cluster id, else the one stored in the directory, else a new one (then stored)."""
        stored = self.directory / "cluster-id"
        if self._cluster_id is None:
            self._cluster_id = stored.read_text().strip() if stored.exists() else new_cluster_id()
        stored.write_text(self._cluster_id + "\n")
        return self._cluster_id

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise UserFacingError("'java' is not on PATH; install a Java 17 runtime (e.g. openjdk-17-jre)")
        return java

    def _java_argv(self, main_class: str, *args: str, heap: tuple[str, ...] = JVM_FLAGS) -> list[str]:
        # The classpath wildcard is passed unexpanded: Java expands `<dir>/*` itself.
        log4j = f"-Dlog4j.configuration=file:{LOG4J_PROPERTIES}"
        return [self._java(), *heap, log4j, "-cp", f"{self.lib_dir}/*", main_class, *args]

    def prepare(self) -> None:
        """Check Java, fetch the jars if needed, write server.properties and format storage once."""
        self._java()
        ensure_kafka_jars(self.lib_dir)
        text = "".join(f"{key}={value}\n" for key, value in self.properties().items())
        self.properties_path.write_text(
            "# Written by `livecommerce kafka start`; edits are overwritten.\n" + text
        )
        if (self.data_dir / "meta.properties").exists():
            return
        argv = self._java_argv(
            "kafka.tools.StorageTool",
            "format",
            # One argument: a stored or given id beginning with '-' must not be parsed as an option.
            f"--cluster-id={self.cluster_id()}",
            "-c",
            str(self.properties_path),
            heap=("-Xmx256m",),
        )
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-3000:]
            raise UserFacingError(f"formatting Kafka storage in {self.data_dir} failed:\n{output}")

    def command(self) -> list[str]:
        return self._java_argv("kafka.Kafka", str(self.properties_path))

    def is_ready(self) -> bool:
        return kafka_answers(self.bootstrap)
