"""`duet dev` stops its engines when it is terminated, not only on Ctrl-C.

The engines run in process groups of their own (so that stopping one takes its children), which
also means they outlive `duet dev` unless it stops them itself. These tests run the mechanism
`run_dev` uses (`stop_on_termination`, then cleanup in `finally`) in a child Python process
that starts a long-running process in a session of its own, as the engines are started; the
signal path needs no engine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import subprocess, sys, time
from duet.devstack import stop_on_termination
stop_on_termination()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
open(sys.argv[1], "w").write(str(child.pid))
try:
    while True:
        time.sleep(3600)
finally:
    child.terminate()
    child.wait(10)
    open(sys.argv[1] + ".stopped", "w").write("yes")
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("termination", [signal.SIGTERM, signal.SIGHUP])
def test_termination_runs_the_cleanup_that_stops_the_engines(
    tmp_path: Path, termination: signal.Signals
) -> None:
    marker = tmp_path / "child.pid"
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker)])
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the script did not start its child"
        time.sleep(0.05)
    child = int(marker.read_text())
    assert alive(child)
    process.send_signal(termination)
    assert process.wait(timeout=30) == 128 + termination
    assert (tmp_path / "child.pid.stopped").read_text() == "yes"
    deadline = time.monotonic() + 10
    while alive(child):  # reaped by its parent's wait(); gone from the process table
        assert time.monotonic() < deadline, "the engine stand-in outlived the stop"
        time.sleep(0.05)
