"""`docker compose up` for real: the files users run, on the tests' own Docker engine.

The stack is docker-compose.yml + compose/cpu.yml (the no-GPU demo, unchanged) + the test
override tests/compose/override.yml, run as its own Compose project with a bare environment: an
empty env file (not a developer's .env) and only the documented .env knobs in `knobs()`. The
images are the stand-ins services/compose-test/build-images.sh builds under the official names;
the web UI image is built here by `docker compose build`, from services/webui/Dockerfile.

`ContainerEvents` records, while the stack comes up, when each container started, became healthy
and exited, as the Docker engine reports it: the start order the compose file promises is checked
against that record.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import docker
from compose_config import ROOT
from docker_daemon import DOCKER_HOST
from down_engine import closed_port
from duet.composefile import compose_binary
from duet.devstack import TINY_CONTEXT, CachePaths
from duet.settings import default_cache

USER_FILES = ["docker-compose.yml", "compose/cpu.yml"]
OVERRIDE = "tests/compose/override.yml"
PROJECT = "duet-compose-test"
COMMITTED_MODELFILE = "qwen3-0.6b.Modelfile"  # compose/cpu.yml's OLLAMA_CPU_MODELFILE default

# Kept between runs, in the daemon's data root under the cache: vLLM's compiled kernels. Every
# other volume (the conversations, Ollama's models) starts empty in each run.
KEPT_VOLUMES = {"vllm-cache"}

UP_SECONDS = 900.0  # a cold vLLM compiles its kernels first: minutes on a loaded 2-core machine
COMMAND_SECONDS = 600.0


class ComposeError(RuntimeError):
    pass


def knobs(paths: CachePaths, webui_port: int) -> dict[str, str]:
    """The .env knobs the test sets (each is documented in .env.example): the tiny model, sized
    for it and this machine, and a free port for the web UI."""
    return {
        "VLLM_CPU_MODEL": f"/models/{paths.tiny_model.name}",  # mounted by the override
        "VLLM_MAX_MODEL_LEN": str(TINY_CONTEXT),  # the tiny model's whole context
        "OLLAMA_CONTEXT_LENGTH": str(TINY_CONTEXT),
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB, as the dev stack gives it
        "HF_HUB_OFFLINE": "1",  # no hub to ask
        "WEBUI_PORT": str(webui_port),
    }


def tiny_modelfile(paths: CachePaths) -> str:
    """The committed CPU Modelfile with its FROM line naming the tiny GGUF, as mounted in the
    init container: the only line the test changes."""
    committed = (ROOT / "modelfiles" / COMMITTED_MODELFILE).read_text(encoding="utf-8")
    lines = committed.splitlines(keepends=True)
    (index,) = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    lines[index] = f"FROM /models/{paths.tiny_gguf.name}\n"
    return "".join(lines)


@dataclass
class ComposeStack:
    workdir: Path  # the empty env file and the generated Modelfile
    paths: CachePaths = field(default_factory=lambda: CachePaths(default_cache()))
    webui_port: int = field(default_factory=closed_port)
    startup: ContainerEvents | None = None  # the engine's events while the stack first came up

    def __post_init__(self) -> None:
        binary = compose_binary()
        if binary is None or not binary.is_file():
            raise ComposeError("no Compose binary: run services/dev/install-compose.sh")
        self.binary = binary
        self.env_file = self.workdir / "empty.env"
        self.env_file.write_text("")
        self.modelfiles = self.workdir / "modelfiles"
        self.modelfiles.mkdir(exist_ok=True)
        (self.modelfiles / COMMITTED_MODELFILE).write_text(tiny_modelfile(self.paths))

    @cached_property
    def docker(self) -> docker.DockerClient:
        """The engine's API (asked for only once a test needs the engine)."""
        return docker.DockerClient(base_url=DOCKER_HOST)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webui_port}"

    def environment(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.workdir),
            "DOCKER_HOST": DOCKER_HOST,
            "DUET_TEST_MODELS": str(self.paths.tiny_model.parent),
            "DUET_TEST_MODELFILES": str(self.modelfiles),
            **knobs(self.paths, self.webui_port),
        }

    def compose(
        self, *args: str, timeout: float = COMMAND_SECONDS, files: list[str] | None = None
    ) -> str:
        files = [*USER_FILES, OVERRIDE] if files is None else files
        command = [str(self.binary), "-p", PROJECT, "--env-file", str(self.env_file)]
        command += [arg for path in files for arg in ("-f", path)]
        done = subprocess.run(
            [*command, *args],
            cwd=ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise ComposeError(
                f"`docker compose {' '.join(args)}` failed ({done.returncode}):\n"
                f"{done.stderr[-3000:]}\n{self.logs_tail()}"
            )
        return done.stdout

    def up(self) -> None:
        """`docker compose up --detach`: returns once every dependency condition is met."""
        try:
            self.compose("up", "--detach", timeout=UP_SECONDS)
        except ComposeError as error:
            # Seen once on Docker 20.10 right after `down`: Compose's wait for a dependency
            # asked for a container the engine had just started and was told there was no such
            # container. Compose converges on a second `up`; any other failure is final.
            if "No such container" not in str(error):
                raise
            self.compose("up", "--detach", timeout=UP_SECONDS)

    def config(self, files: list[str] | None = None) -> dict[str, Any]:
        return json.loads(self.compose("config", "--format", "json", files=files))

    def containers(self) -> dict[str, Any]:
        """Service name → its container (the docker SDK's), stopped ones included."""
        found = self.docker.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}
        )
        return {c.labels["com.docker.compose.service"]: c for c in found}

    def reset(self) -> None:
        """Take the project down and remove its volumes, except `KEPT_VOLUMES`."""
        self.compose("down", "--remove-orphans")
        for volume in self.docker.volumes.list(
            filters={"label": f"com.docker.compose.project={PROJECT}"}
        ):
            if volume.attrs["Labels"].get("com.docker.compose.volume") not in KEPT_VOLUMES:
                volume.remove()

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", "--no-log-prefix", service)

    def logs_tail(self, lines: int = 25) -> str:
        parts = []
        try:
            containers = self.containers()
        except docker.errors.DockerException as error:
            return f"(no container logs: {error})"
        for service, container in sorted(containers.items()):
            tail = container.logs(tail=lines).decode(errors="replace").rstrip()
            parts.append(f"--- {service} ({container.status}), last lines:\n{tail}")
        return "\n".join(parts)

    def wait_ready(self, services: Mapping[str, str], timeout: float = UP_SECONDS) -> None:
        """Wait until each service's container is in the given state: "healthy", or "exited"
        (with code 0) for a one-shot job. A container that exits with another code, or one
        awaited as healthy that exits, fails at once."""
        deadline = time.monotonic() + timeout
        while True:
            containers = self.containers()
            states = {name: c.attrs["State"] for name, c in containers.items()}
            for name, state in states.items():
                if state["Status"] == "exited" and (
                    state["ExitCode"] != 0 or services.get(name) == "healthy"
                ):
                    raise ComposeError(
                        f"{name} exited with code {state['ExitCode']}\n{self.logs_tail()}"
                    )
            reached = {
                name
                for name, wanted in services.items()
                if name in states
                and (
                    states[name]["Status"] == "exited"
                    if wanted == "exited"
                    else (states[name].get("Health") or {}).get("Status") == wanted
                )
            }
            if reached == set(services):
                return
            if time.monotonic() > deadline:
                raise ComposeError(
                    f"after {timeout:.0f}s still waiting for {sorted(set(services) - reached)}\n"
                    f"{self.logs_tail()}"
                )
            time.sleep(1)

    def close(self) -> None:
        if "docker" in self.__dict__:
            self.docker.close()


@dataclass(frozen=True)
class Event:
    service: str
    action: str  # start, die, health_status: healthy, ...
    time_ns: int
    exit_code: int | None


class ContainerEvents:
    """The Docker engine's container events for the project, recorded as they happen (the
    engine keeps only its most recent events, and health checks add their own)."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.events: list[Event] = []
        self._stream = client.events(
            decode=True,
            filters={"type": "container", "label": f"com.docker.compose.project={PROJECT}"},
        )
        self._thread = threading.Thread(target=self._record, daemon=True, name="docker-events")
        self._thread.start()

    def _record(self) -> None:
        try:
            for raw in self._stream:
                attributes = raw.get("Actor", {}).get("Attributes", {})
                code = attributes.get("exitCode")
                self.events.append(
                    Event(
                        attributes.get("com.docker.compose.service", "?"),
                        raw.get("Action", raw.get("status", "")),
                        int(raw["timeNano"]),
                        int(code) if code is not None else None,
                    )
                )
        except Exception:  # the stream is closed under the reader when recording stops
            return

    def close(self) -> None:
        self._stream.close()
        self._thread.join(timeout=10)

    def first(self, service: str, action: str) -> Event | None:
        return next((e for e in self.events if e.service == service and e.action == action), None)


@contextmanager
def recording(client: docker.DockerClient) -> Iterator[ContainerEvents]:
    events = ContainerEvents(client)
    try:
        yield events
    finally:
        events.close()
