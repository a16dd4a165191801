"""One driver per run directory: an exclusive ``flock`` on ``<run>/driver.lock``.

The kernel drops a ``flock`` when its process ends, however it ends (SIGKILL included), so
a crashed driver never leaves a stale lock behind for ``megasim resume``. The file itself
stays, holding the last holder's pid, host and start time, for the refusal message.
flock on a shared filesystem (a Ray cluster's run directory) works where the filesystem
supports it (NFSv4, CephFS, Lustre with flock mounts); megasim takes it on the driver only.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from megasim.store.run_dir import RunDirectoryError

LOCK_FILE = "driver.lock"


class RunInUseError(RunDirectoryError):
    """Another live driver holds the run directory; the message names it."""


class RunLock:
    """Held while a driver writes a run directory (``with RunLock(path): ...``)."""

    def __init__(self, run_path: Path) -> None:
        self.path = run_path / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise RunInUseError(
                f"{self.path.parent}: another driver is writing this run ({holder}); "
                "wait for it to end or stop it first"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


def _describe(raw: bytes) -> str:
    """``pid 12 on host-a since 2026-11-30 04:52:31 UTC`` from the lock file's content."""
    try:
        info = json.loads(raw)
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info["since"])))
        return f"pid {int(info['pid'])} on {info['host']} since {since}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
