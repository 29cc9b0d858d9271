"""Several local KRaft nodes forming one Kafka cluster, for scale-out and failover tests.

Node i (1-based) lives in `<directory>/node-<i>`, listens for clients on `ports[i-1]` and for the
controller quorum on `ports[i-1] + 1` unless controller ports are given. Every node is broker and
controller; replication factors are raised so the cluster survives losing one node (3 nodes:
replication 3, min.insync.replicas 2).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.local.kafka import LocalKafka, new_cluster_id
from pipeline.local.service import Status


class LocalKafkaCluster:
    def __init__(
        self,
        directory: Path,
        lib_dir: Path,
        ports: list[int],
        controller_ports: list[int] | None = None,
        tied: bool = False,
    ):
        self.directory = Path(directory).resolve()
        controller_ports = controller_ports or [port + 1 for port in ports]
        voters = ",".join(f"{i}@127.0.0.1:{c}" for i, c in enumerate(controller_ports, start=1))
        replication = str(min(3, len(ports)))
        min_isr = str(max(1, min(3, len(ports)) - 1))
        extra = {
            "default.replication.factor": replication,
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "min.insync.replicas": min_isr,
        }
        self.nodes = [
            LocalKafka(
                directory=self.directory / f"node-{i}",
                lib_dir=lib_dir,
                port=port,
                controller_port=controller,
                node_id=i,
                voters=voters,
                cluster_id=self._cluster_id(),
                extra_properties=extra,
                tied=tied,
            )
            for i, (port, controller) in enumerate(zip(ports, controller_ports, strict=True), start=1)
        ]

    def _cluster_id(self) -> str:
        stored = self.directory / "cluster-id"
        if not stored.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            stored.write_text(new_cluster_id() + "\n")
        return stored.read_text().strip()

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self) -> bool:
        """Launch every node that is not running, then wait until each answers; False if all ran."""
        launched = [(node, node.launch()) for node in self.nodes]
        for node, pid in launched:
            if pid is not None:
                node.wait_ready(pid)
        return any(pid is not None for _, pid in launched)

    def stop(self) -> bool:
        return any([node.stop() for node in self.nodes])

    def running(self) -> list[LocalKafka]:
        return [node for node in self.nodes if node.running_pid() is not None]

    # The same face as a single LocalService, so the CLI's start/status/stop handlers serve both.
    name = "kafka cluster"

    @property
    def endpoint(self) -> str:
        return self.bootstrap

    @property
    def log_path(self) -> Path:
        return self.directory / "node-*" / "logs" / "kafka.log"

    def running_pid(self) -> int | None:
        pids = [node.running_pid() for node in self.nodes]
        return next((pid for pid in pids if pid is not None), None)

    def status(self) -> Status:
        # Each running node recorded the address it was started with (status/stop are given no ports).
        up = [node.status() for node in self.running()]
        bootstrap = ",".join(s.endpoint for s in up) or self.bootstrap
        pids = ",".join(str(s.pid) for s in up)
        endpoint = f"{bootstrap}; {len(up)} of {len(self.nodes)} nodes up (pids {pids or '-'})"
        return Status(self.name, self.running_pid(), endpoint, self.log_path)
