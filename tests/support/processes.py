"""Writ as separate processes, for the crash tests: started in their own session, signalled, always reaped.

    with WritProcess(["worker", "--data-dir", home], tmp_path / "worker.log") as worker:
        worker.wait_for(r"writ: worker on task queue")          # its output so far, or the test fails
        worker.kill()                                           # SIGKILL to its process group
    done = writ("approve", plan_id, "--key", key, "--data-dir", home)   # one command, checked for tracebacks
    pids_with(str(home / "temporal.db"))                        # processes whose command line names it

Every process gets a session of its own (``start_new_session``), so a signal reaches it and
whatever it started in its group, and nothing of the test runner. Its output goes to a log file
(never a pipe that could fill up and stall it), which a failing test shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

WRIT = Path(sys.executable).with_name("writ")
COMMAND_TIMEOUT_S = 90.0
"""Bound on one ``writ`` command: a hung command fails its test instead of the run."""


def _env(extra: dict[str, str | None] | None) -> dict[str, str]:
    """The environment of this process, unbuffered, with ``extra`` set (a value of None: removed)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def writ(*args: str | Path, code: int = 0, env: dict[str, str | None] | None = None,
         timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run one ``writ`` command as a user does; assert its exit status and that no traceback was printed."""
    argv = [str(WRIT), *map(str, args)]
    done = subprocess.run(argv, env=_env(env), capture_output=True, text=True, timeout=timeout,  # noqa: S603
                          stdin=subprocess.DEVNULL, check=False)
    shown = f"$ {' '.join(argv)}\n(exit {done.returncode})\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr, shown
    assert done.returncode == code, shown
    return done


class WritProcess:
    """A long-running ``writ`` command (``serve``, ``worker``) in its own session, its output in ``log``."""

    def __init__(self, args: list[str | Path], log: Path, *, env: dict[str, str | None] | None = None) -> None:
        self.argv = [str(WRIT), *map(str, args)]
        self.log = log
        self.env = _env(env)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self) -> WritProcess:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - the venv's own writ, arguments of the test
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first match of ``pattern`` in its output; the test fails if it exits or stays silent first."""
        assert self.process is not None, "not started"
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output())
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"{self.argv} exited with {self.process.returncode} before "
                                     f"{pattern!r}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.argv} did not print {pattern!r} within {timeout:g} s:\n{self.output()}")
            time.sleep(0.1)

    def wait(self, timeout: float = COMMAND_TIMEOUT_S) -> int:
        """Its exit status, once it has ended by itself (a SIGKILL and a failure after ``timeout``)."""
        assert self.process is not None, "not started"
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.argv} did not end within {timeout:g} s:\n{self.output()}") from None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process alone (as an operator's ``kill`` does)."""
        assert self.process is not None, "not started"
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, sig)

    def kill(self) -> int:
        """SIGKILL to its whole process group (``kill -9``); its exit status (-9)."""
        assert self.process is not None, "not started"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(30)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then its exit status; the test fails (after a SIGKILL) if it does not stop in ``timeout``."""
        assert self.process is not None, "not started"
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.argv} did not stop within {timeout:g} s of SIGTERM:\n{self.output()}") from None

    def __enter__(self) -> WritProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


def pids_with(fragment: str) -> list[int]:
    """Live processes (not zombies) whose command line contains ``fragment``, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if fragment in cmdline and alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue  # it ended while we looked
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists (``kill(pid, 0)``) and is no zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def gone_within(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Which of ``pids`` still run after ``timeout`` (an empty list: all gone)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill_leftovers(fragment: str) -> list[int]:
    """SIGKILL every process whose command line contains ``fragment`` (a cleanup of last resort); their pids."""
    pids = pids_with(fragment)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids
