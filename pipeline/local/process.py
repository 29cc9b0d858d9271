"""Process and port helpers shared by the local Kafka and ClickHouse managers.

Everything here is about one machine (127.0.0.1) and one background process per service:
a pidfile, liveness, detached spawning, a bounded terminate, free/taken ports, polling with a
deadline and the tail of a log file.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

LOCALHOST = "127.0.0.1"


def find_free_port(host: str = LOCALHOST) -> int:
    """A TCP port nobody listens on right now (the kernel's choice; free until someone binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    """True if binding `host:port` fails, i.e. some process already listens there.

    SO_REUSEADDR mirrors what the servers do, so a port lingering in TIME_WAIT counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def port_accepts(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    """True if a TCP connection to `host:port` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `predicate` until it returns True (-> True) or `timeout` seconds pass (-> False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(path: Path, lines: int = 25) -> str:
    """The last `lines` lines of a text file, or a note that it does not exist."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class PidFile:
    """A file holding one process id; a missing or unreadable file means 'no process'."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs. Reaps it first if it is our own exited child, and counts a zombie as dead
    (a fixture's child stays a zombie until reaped; a CLI-started one is reaped by init)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def cmdline(pid: int) -> str:
    """The process's command line joined by spaces ('' if unreadable); used to tell our process from a
    stranger that reused a stale pid."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGTERM it when its parent dies, so a test
    # session killed hard leaves no broker behind.
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn_detached(
    argv: Sequence[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None, tied: bool = False
) -> int:
    """Start `argv` in its own session with stdout+stderr appended to `log_path`; return its pid.

    The process outlives the caller (it is not in the caller's process group, so a Ctrl-C at the
    terminal does not reach it) unless `tied` is set, in which case it gets SIGTERM when the caller dies.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_die_with_parent if tied else None,
        )
    return proc.pid


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM `pid`, wait up to `timeout` s for it to exit, then SIGKILL it.

    Returns True if it exited on SIGTERM, False if it had to be killed.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_until(lambda: not pid_alive(pid), timeout, interval=0.1):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 10, interval=0.1)
    return False
