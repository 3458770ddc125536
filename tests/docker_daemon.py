"""A Docker engine of the tests' own: Debian's dockerd, started and stopped by its PID.

The compose tests (tests/test_compose_stack.py) and the image builds
(services/compose-test/build-images.sh) run against a dockerd whose images and volumes live in
the cache (`$DUET_CACHE/docker-VERSION/`), so images survive between runs, and whose socket,
PID file and runtime state live under `RUN_DIR`, away from any Docker the machine may have.

dockerd changes the host to give containers a network: it adds the `docker0` bridge (and one
`br-…` bridge a Compose network), iptables chains and rules, and turns on IPv4 forwarding.
`start` notes how the host was before; `stop` ends dockerd by its PID and then takes back what
it added, so the machine is left as found. The note is kept on disk, so a `stop` from another
process (`python tests/docker_daemon.py stop`) cleans up after a run that died.

    python tests/docker_daemon.py run -- COMMAND...   COMMAND with the daemon up (DOCKER_HOST set)
    python tests/docker_daemon.py start | stop
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RUN_DIR = Path(os.environ.get("DUET_DOCKER_RUN_DIR", "/run/duet-docker"))
SOCKET = RUN_DIR / "docker.sock"
DOCKER_HOST = f"unix://{SOCKET}"
PID_FILE = RUN_DIR / "dockerd.pid"
BEFORE_FILE = RUN_DIR / "host-before.json"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# The network interfaces dockerd makes: its default bridge, one bridge a network, and the
# container ends of veth pairs left behind by a container that died with the daemon.
DOCKER_LINKS = re.compile(r"^(docker0|br-[0-9a-f]{12}|veth[0-9a-f]+)$")


class DockerDaemonError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("DUET_CACHE", Path.home() / ".cache" / "duet"))


def dockerd_version() -> str:
    """`20.10.24` from `Docker version 20.10.24+dfsg1, build 5d6db84`."""
    done = subprocess.run(["dockerd", "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"version (\d+\.\d+\.\d+)", done.stdout)
    if match is None:
        raise DockerDaemonError(f"cannot read dockerd's version from {done.stdout!r}")
    return match.group(1)


def data_root() -> Path:
    return cache_dir() / f"docker-{dockerd_version()}"


def log_path() -> Path:
    return cache_dir() / "logs" / "dockerd.log"


# --- what dockerd changes on the host --------------------------------------------------------


def links() -> set[str]:
    done = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return {line.split(": ")[1].split("@")[0] for line in done.stdout.splitlines()}


@dataclass(frozen=True)
class Table:
    """One table of `iptables-save`: its chains with their policies, and its rules in order."""

    chains: dict[str, str]
    rules: list[str]  # the `-A CHAIN …` lines


def iptables_tables() -> dict[str, Table]:
    done = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True)
    tables: dict[str, Table] = {}
    table: Table | None = None
    for line in done.stdout.splitlines():
        if line.startswith("*"):
            table = tables.setdefault(line[1:], Table({}, []))
        elif table is not None and line.startswith(":"):
            name, policy, *_ = line[1:].split()
            table.chains[name] = policy
        elif table is not None and line.startswith("-A "):
            table.rules.append(line)
    return tables


def note_host() -> None:
    """Write down what dockerd is about to change."""
    before = {
        "links": sorted(links()),
        "ip_forward": IP_FORWARD.read_text().strip(),
        "iptables": {
            name: {"chains": table.chains, "rules": table.rules}
            for name, table in iptables_tables().items()
        },
    }
    BEFORE_FILE.write_text(json.dumps(before, indent=1))


def iptables(*args: str) -> None:
    subprocess.run(["iptables", *args], capture_output=True, text=True, check=False)


def restore_host() -> list[str]:
    """Take back the interfaces, iptables rules and chains and the forwarding switch that
    appeared since `note_host`; returns what was undone, one line each."""
    if not BEFORE_FILE.exists():
        return []
    before = json.loads(BEFORE_FILE.read_text())
    undone = []
    for link in sorted(links() - set(before["links"])):
        if DOCKER_LINKS.match(link):
            subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
            undone.append(f"link {link}")
    for name, table in iptables_tables().items():
        old = before["iptables"].get(name, {"chains": {}, "rules": []})
        # Rules first (a chain is deleted only once nothing jumps to it), newest first.
        for rule in reversed(table.rules):
            if rule not in old["rules"]:
                iptables("-t", name, "-D", *shlex.split(rule)[1:])
                undone.append(f"iptables -t {name} {rule}")
        for chain, policy in table.chains.items():
            if chain not in old["chains"] and policy == "-":  # a chain dockerd made
                iptables("-t", name, "-F", chain)
                iptables("-t", name, "-X", chain)
                undone.append(f"iptables -t {name} chain {chain}")
            elif policy != "-" and policy != old["chains"].get(chain, "ACCEPT"):
                iptables("-t", name, "-P", chain, old["chains"].get(chain, "ACCEPT"))
                undone.append(f"iptables -t {name} policy {chain} {policy}")
    if IP_FORWARD.read_text().strip() != before["ip_forward"]:
        IP_FORWARD.write_text(before["ip_forward"] + "\n")
        undone.append(f"ip_forward back to {before['ip_forward']}")
    BEFORE_FILE.unlink()
    return undone


# --- the daemon --------------------------------------------------------------------------------


def running_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    # A dockerd this process started and that has exited is a zombie until reaped: reap it.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def answers() -> bool:
    """Does the daemon answer `GET /_ping` on its socket?"""
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(5)
            conn.connect(str(SOCKET))
            conn.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return conn.recv(64).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def log_tail(lines: int = 30) -> str:
    try:
        return "\n".join(log_path().read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def other_dockerds() -> list[int]:
    """PIDs of dockerd processes that are not this module's."""
    ours = running_pid()
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "dockerd" and int(comm.parent.name) != ours:
                found.append(int(comm.parent.name))
    return found


def start(timeout: float = 120.0) -> None:
    """Start dockerd (if this module's is not running yet) and wait until it answers."""
    if running_pid() is not None and answers():
        return
    if others := other_dockerds():
        # Two daemons would share the default docker0 bridge and fight over its iptables rules.
        raise DockerDaemonError(
            f"another dockerd is running (PID {', '.join(map(str, others))}); the compose test "
            "runs a Docker engine of its own and needs the machine's to be stopped first"
        )
    stop()  # whatever a dead run left behind
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    note_host()
    root = data_root()
    root.mkdir(parents=True, exist_ok=True)
    log_path().parent.mkdir(parents=True, exist_ok=True)
    command = [
        "dockerd",
        f"--data-root={root}",
        f"--exec-root={RUN_DIR / 'exec'}",
        f"--pidfile={PID_FILE}",
        f"--host={DOCKER_HOST}",
        "--storage-driver=overlay2",
        # The registries are out of reach: fail a pull at once instead of retrying.
        "--max-download-attempts=1",
    ]
    with log_path().open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while not answers():
        if process.poll() is not None:
            restore_host()
            raise DockerDaemonError(f"dockerd exited with {process.returncode}:\n{log_tail()}")
        if time.monotonic() > deadline:
            stop()
            raise DockerDaemonError(f"dockerd did not answer in {timeout:.0f}s:\n{log_tail()}")
        time.sleep(0.5)


def stop(timeout: float = 60.0) -> list[str]:
    """Stop dockerd by its PID (it stops its containers and containerd first), then restore the
    host; returns what was undone."""
    pid = running_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while running_pid() == pid and time.monotonic() < deadline:
            time.sleep(0.2)
        if running_pid() == pid:
            os.killpg(pid, signal.SIGKILL)
            while running_pid() == pid:
                time.sleep(0.2)
    undone = restore_host()
    # The socket, the PID file and dockerd's runtime state: nothing of it outlives the daemon.
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    return undone


@contextlib.contextmanager
def exclusive(timeout: float = 3600.0) -> Iterator[None]:
    """Hold the machine's one test Docker engine for the block: a second run (image builds, or
    another checkout's compose test) waits instead of stopping the engine under the first."""
    lock = cache_dir() / "docker.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as held:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DockerDaemonError(f"{lock} was held for {timeout:.0f}s") from None
                time.sleep(2)
        yield


@contextlib.contextmanager
def running() -> Iterator[str]:
    """The daemon up for the block, held by this process alone; yields its DOCKER_HOST."""
    with exclusive():
        start()
        try:
            yield DOCKER_HOST
        finally:
            stop()


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"]:
        start()
        print(DOCKER_HOST)
        return 0
    if argv[:1] == ["stop"]:
        for line in stop():
            print(f"undone: {line}")
        return 0
    if argv[:2] == ["run", "--"] and len(argv) > 2:
        with running() as host:
            return subprocess.run(argv[2:], env=os.environ | {"DOCKER_HOST": host}).returncode
    print(__doc__.split("\n\n")[-1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
