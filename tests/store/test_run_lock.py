"""One driver per run directory (store/run_lock.py): refused while held, free after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megasim.store.run_dir import RunDirectoryError
from megasim.store.run_lock import LOCK_FILE, RunInUseError, RunLock

HOLD = """
import sys, time
from pathlib import Path
from megasim.store.run_lock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(120)
"""


def hold_in_another_process(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    refused = pytest.raises(RunInUseError, match=rf"pid {os.getpid()} on .* since .* UTC")
    with RunLock(tmp_path), refused:
        RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released on exit: free again
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid()
    assert issubclass(RunInUseError, RunDirectoryError)  # the CLI's exit-2 error


def test_lock_of_a_live_process_refuses_then_sigkill_frees_it(tmp_path: Path) -> None:
    proc = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(RunInUseError, match=f"pid {proc.pid} "):
            RunLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / LOCK_FILE).exists()  # the stale file is left behind ...
    started = time.monotonic()
    with RunLock(tmp_path):  # ... but it does not block anyone
        pass
    assert time.monotonic() - started < 1


def test_unreadable_holder_info_still_refuses(tmp_path: Path) -> None:
    with RunLock(tmp_path) as lock:
        assert lock._fd is not None
        os.ftruncate(lock._fd, 0)  # as if the holder died before writing who it is
        with pytest.raises(RunInUseError, match="holder unknown"):
            RunLock(tmp_path).acquire()
