"""The dev stack without its engines: how it stops, and what a failed start says.

`duet dev` stops its engines when it is terminated, not only on Ctrl-C. The engines run in
process groups of their own (so that stopping one takes its children), which also means they
outlive `duet dev` unless it stops them itself. These tests run the mechanism `run_dev` uses
(`stop_on_termination`, then cleanup in `finally`) in a child Python process that starts a
long-running process in a session of its own, as the engines are started; the signal path
needs no engine.

Creating the tiny model in an Ollama that is not there fails with the reason and Ollama's log.
The install step that runs beside the others (Ollama's build, beside vLLM's install) runs while
they do, shows its output after, fails the install when it fails, and is stopped when they fail.
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
from duet.devstack import TINY_MODEL_NAME, CachePaths, DevStack, EngineStartError, _step_beside

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


def written(path: Path, timeout: float = 30) -> bool:
    """Whether `path` has something in it within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return True
        time.sleep(0.05)
    return False


def test_a_step_beside_runs_while_the_others_do_and_its_output_follows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ensure_installed` builds Ollama beside vLLM's install: the background step runs while
    the block does (the block sees it start), and what it printed is shown once it ends."""
    started = tmp_path / "started"
    command = ["bash", "-c", f"echo yes > {started}; echo built it"]
    with _step_beside("Build", command, dict(os.environ), tmp_path / "logs" / "build.log"):
        assert written(started), "the step beside never started while the block ran"
    printed = capsys.readouterr().out
    assert printed.index("==> Build, beside") < printed.index("built it")
    assert "done in" in printed


def test_a_failed_step_beside_fails_the_install_and_a_failed_block_stops_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = ["bash", "-c", "echo no Go here; exit 3"]
    with (
        pytest.raises(subprocess.CalledProcessError) as failed,
        _step_beside("Build", failing, dict(os.environ), tmp_path / "a.log"),
    ):
        pass
    assert failed.value.returncode == 3 and "no Go here" in capsys.readouterr().out

    pid_file = tmp_path / "pid"
    endless = ["bash", "-c", f"echo $$ > {pid_file}; exec sleep 600"]
    with (
        pytest.raises(RuntimeError, match="vLLM failed"),
        _step_beside("Build", endless, dict(os.environ), tmp_path / "b.log"),
    ):
        assert written(pid_file), "the step beside never started"
        raise RuntimeError("vLLM failed")
    assert not alive(int(pid_file.read_text())), "the step beside outlived the failed install"
