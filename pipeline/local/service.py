"""The lifecycle every local service shares: start in the background, report status, stop by pid.

A concrete service (`LocalKafka`, `LocalClickHouse`) says which ports it needs, how to prepare its
directory, which command runs it and how to tell that it answers; this class does the rest the same
way for both: refuse taken ports, keep a pidfile, wait for readiness while failing fast with the tail
of the log when the process dies, and stop with SIGTERM then SIGKILL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UserFacingError
from pipeline.local import process


@dataclass(frozen=True)
class Status:
    """What `status()` found: `pid` is None when the service is down."""

    name: str
    pid: int | None
    endpoint: str
    log_path: Path

    @property
    def up(self) -> bool:
        return self.pid is not None


class LocalService(ABC):
    """One background process owned by `directory`.

    `tied=True` makes the process die with the Python process that started it (for test fixtures);
    the CLI leaves it False so the service outlives the command.
    """

    name: str = "service"
    start_timeout: float = 90.0
    stop_timeout: float = 30.0

    def __init__(self, directory: Path, tied: bool = False):
        self.directory = Path(directory).resolve()
        self.tied = tied
        self.pidfile = process.PidFile(self.directory / f"{self.name}.pid")
        self.log_path = self.directory / "logs" / f"{self.name}.log"
        # Written at start so `status` reports the ports actually used, whatever options it was given.
        self.endpoint_file = self.directory / f"{self.name}.endpoint"

    # What a concrete service provides.
    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where clients connect, e.g. '127.0.0.1:9092' or 'http://127.0.0.1:8123'."""

    @abstractmethod
    def ports(self) -> dict[str, int]:
        """Every port the process binds, by the CLI option that sets it (for the 'port taken' message)."""

    @abstractmethod
    def prepare(self) -> None:
        """Create config and data directories; may raise `UserFacingError`."""

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the service in the foreground (cwd: `directory`)."""

    @abstractmethod
    def is_ready(self) -> bool:
        """True when the service answers clients; called repeatedly during start."""

    # The shared lifecycle.
    def running_pid(self) -> int | None:
        """The pid from the pidfile if that process is alive and is ours; a stale pidfile is removed."""
        pid = self.pidfile.read()
        if pid is None:
            return None
        if process.pid_alive(pid) and str(self.directory) in process.cmdline(pid):
            return pid
        self.pidfile.remove()
        return None

    def status(self) -> Status:
        pid = self.running_pid()
        endpoint = self.endpoint
        if pid is not None and self.endpoint_file.exists():
            endpoint = self.endpoint_file.read_text().strip()
        return Status(self.name, pid, endpoint, self.log_path)

    def start(self) -> bool:
        """Start the service and return once it answers; False if it was already running.

        Raises `UserFacingError` if a port is taken, preparation fails, the process exits during
        start (with the tail of its log), or it does not answer within `start_timeout` seconds.
        """
        pid = self.launch()
        if pid is None:
            return False
        self.wait_ready(pid)
        return True

    def launch(self) -> int | None:
        """Check ports, prepare and spawn the process without waiting for it to answer; None if it
        already runs. Several services that need each other (a KRaft quorum) launch first, then wait."""
        if self.running_pid() is not None:
            return None
        for option, port in self.ports().items():
            if process.port_in_use(port):
                raise UserFacingError(
                    f"port {port} on {process.LOCALHOST} is already in use by another process; "
                    f"stop it or choose another port with {option}"
                )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prepare()
        pid = process.spawn_detached(self.command(), self.log_path, cwd=self.directory, tied=self.tied)
        self.pidfile.write(pid)
        return pid

    def wait_ready(self, pid: int) -> None:
        """Return once the launched process answers; otherwise stop it and raise `UserFacingError`."""
        exited = False

        def ready_or_exited() -> bool:
            nonlocal exited
            exited = not process.pid_alive(pid)
            return exited or self.is_ready()

        answered = process.wait_until(ready_or_exited, self.start_timeout, interval=0.25)
        if answered and not exited:
            self.endpoint_file.write_text(self.endpoint + "\n")
            return
        if not exited:
            process.terminate(pid, self.stop_timeout)
        self.pidfile.remove()
        reason = "exited during start" if exited else f"did not answer within {self.start_timeout:.0f} s"
        raise UserFacingError(
            f"{self.name} {reason}; last lines of {self.log_path}:\n{process.log_tail(self.log_path)}"
        )

    def stop(self) -> bool:
        """Stop the service (SIGTERM, then SIGKILL after `stop_timeout`); False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        process.terminate(pid, self.stop_timeout)
        self.pidfile.remove()
        self.endpoint_file.unlink(missing_ok=True)
        return True
