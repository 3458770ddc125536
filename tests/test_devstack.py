"""The dev stack without its engines: how it stops, and what a failed start says.

`duet dev` stops its engines when it is terminated, not only on Ctrl-C. The engines run in
process groups of their own (so that stopping one takes its children), which also means they
outlive `duet dev` unless it stops them itself. These tests run the mechanism `run_dev` uses
(`stop_on_termination`, then cleanup in `finally`) in a child Python process that starts a
long-running process in a session of its own, as the engines are started; the signal path
needs no engine.

Creating the tiny model in an Ollama that is not there fails with the reason and Ollama's log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from down_engine import closed_port
from duet.devstack import TINY_MODEL_NAME, CachePaths, DevStack, EngineStartError

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


def test_creating_the_model_in_an_absent_ollama_says_why_and_shows_its_log(
    tmp_path: Path,
) -> None:
    paths = CachePaths(tmp_path)
    paths.tiny_gguf.parent.mkdir(parents=True)
    paths.tiny_gguf.write_bytes(b"GGUF")
    stack = DevStack(paths=paths, ollama_port=closed_port(), log_dir=tmp_path / "logs")
    stack.ollama = stack._ollama_process()  # described, never started
    stack.ollama.log_path.parent.mkdir()
    stack.ollama.log_path.write_text("Error: listen tcp: address already in use\n")
    assert not stack.ollama.ready()
    with pytest.raises(EngineStartError) as failed:
        stack.create_ollama_model()
    message = str(failed.value)
    assert message.startswith(f"Ollama did not create {TINY_MODEL_NAME}: ConnectError")
    assert message.endswith("Error: listen tcp: address already in use")
