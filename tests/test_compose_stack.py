"""`docker compose up` for real (issue 15): the compose files users run, on a real Docker engine.

The module starts the tests' own dockerd (tests/docker_daemon.py), builds the web UI image with
`docker compose build`, brings up docker-compose.yml + compose/cpu.yml + the test override
(tests/compose/override.yml, see tests/compose_stack.py) and checks, through the web UI's
published port only, what a person who runs `docker compose up` relies on. At the end the
project is taken down with its volumes and dockerd is stopped by its PID, which removes the
bridges and iptables rules it added.

Needs `make compose-images` (Docker from Debian and the stand-in images) first; run just this
part with `make compose-test`. The images are stand-ins under the official names, so what this
proves and what it cannot is in docs/gpu.md ("What the compose test proves").
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from app_server import RunningApp
from chat_page import FRANCE, STORY, answer_text, open_chat, send, wait_for_status
from compose_config import ROOT
from compose_stack import (
    COMMITTED_MODELFILE,
    PROJECT,
    USER_FILES,
    ComposeStack,
    knobs,
    recording,
    tiny_modelfile,
)
from docker_daemon import DOCKER_HOST, DockerDaemonError
from docker_daemon import running as docker_running

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.compose

ENGINES = ("vllm", "ollama")
ONE_SHOT = {"ollama-init"}
# What each service must reach before the stack counts as up.
READY = {"vllm": "healthy", "ollama": "healthy", "ollama-init": "exited", "webui": "healthy"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    with contextlib.ExitStack() as cleanup:
        try:
            cleanup.enter_context(docker_running())
        except DockerDaemonError as error:
            pytest.fail(f"the tests' Docker engine did not start:\n{error}", pytrace=False)
        compose = ComposeStack(tmp_path_factory.mktemp("compose"))
        cleanup.callback(compose.close)
        cleanup.callback(compose.reset)  # first of the clean-up: before the engine stops
        compose.reset()  # whatever a dead run left
        compose.compose("build", "webui")
        with recording(compose.docker) as events:
            compose.up()
            compose.wait_ready(READY)
        compose.startup = events
        yield compose


@pytest.fixture
def webui(stack: ComposeStack) -> RunningApp:
    # The database lives in the webui-data volume inside the container; these tests read what
    # the page shows, never the file.
    return RunningApp(stack.url, Path("/data/duet.sqlite3"))


def changed_keys(before: Any, after: Any, path: str = "") -> set[str]:
    """The dotted paths at which two resolved Compose models differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = set(before) | set(after)
        return set().union(
            *(changed_keys(before.get(k), after.get(k), f"{path}.{k}".lstrip(".")) for k in keys)
        )
    return set() if before == after else {path}


def test_the_override_changes_only_model_sources_and_healthcheck_timing(
    tmp_path: Path,
) -> None:
    compose = ComposeStack(tmp_path)
    try:
        users = compose.config(files=USER_FILES)
        tested = compose.config()
    finally:
        compose.close()
    assert changed_keys(users, tested) == {
        "services.vllm.volumes",
        "services.vllm.healthcheck.interval",
        "services.ollama.healthcheck.interval",
        "services.ollama-init.environment.OLLAMA_MODELFILE",
        "services.ollama-init.volumes",
        "services.webui.healthcheck.interval",
    }
    # Volumes are only added, read-only: the user files' mounts are all still there.
    for service in ("vllm", "ollama-init"):
        before, after = (
            users["services"][service]["volumes"],
            tested["services"][service]["volumes"],
        )
        assert all(volume in after for volume in before), service
        assert all(volume.get("read_only") for volume in after if volume not in before), service

    # The init job's Modelfile is the committed one with another FROM, nothing else.
    committed = (ROOT / "modelfiles" / COMMITTED_MODELFILE).read_text().splitlines()
    generated = tiny_modelfile(compose.paths).splitlines()
    differing = [(a, b) for a, b in zip(committed, generated, strict=True) if a != b]
    assert len(differing) == 1 and differing[0][1].startswith("FROM /models/"), differing

    # The other changes are .env knobs a user has too.
    documented = (ROOT / ".env.example").read_text()
    for knob in knobs(compose.paths, 8080):
        assert re.search(rf"^# {knob}=", documented, re.MULTILINE), f"{knob} not in .env.example"


def test_every_service_comes_up_in_the_order_the_compose_file_promises(
    stack: ComposeStack,
) -> None:
    events = stack.startup
    assert events is not None
    services = stack.config()["services"]
    containers = stack.containers()
    assert set(containers) == set(READY) == set(services)
    for name, container in containers.items():
        state = container.attrs["State"]
        if name in ONE_SHOT:
            assert (state["Status"], state["ExitCode"]) == ("exited", 0), name
        else:
            assert state["Health"]["Status"] == "healthy", name

    promised = [
        (name, dependency, wait["condition"])
        for name, service in services.items()
        for dependency, wait in (service.get("depends_on") or {}).items()
    ]
    assert ("webui", "ollama-init", "service_completed_successfully") in promised
    assert ("ollama-init", "ollama", "service_healthy") in promised
    for name, dependency, condition in promised:
        started = events.first(name, "start")
        assert started is not None, f"no start event for {name}: {events.events}"
        if condition == "service_healthy":
            reached = events.first(dependency, "health_status: healthy")
        elif condition == "service_completed_successfully":
            reached = events.first(dependency, "die")
            assert reached is not None and reached.exit_code == 0, (dependency, reached)
        else:
            reached = events.first(dependency, "start")
        assert reached is not None, f"{dependency} never reached {condition}"
        assert reached.time_ns < started.time_ns, f"{name} started before {dependency}: {condition}"


def test_the_web_ui_runs_the_image_compose_built_as_its_unprivileged_user(
    stack: ComposeStack,
) -> None:
    container = stack.containers()["webui"]
    image = container.image
    assert "duet-webui:local" in image.tags
    # Built by `docker compose build`, with the classic builder (this Docker has no BuildKit).
    assert image.labels.get("com.docker.compose.image.builder") == "classic"
    assert stack.compose("exec", "-T", "webui", "id", "-un").strip() == "duet"
    assert container.attrs["Config"]["Cmd"] == ["duet", "serve"]


def test_the_init_job_created_the_model_from_the_modelfile_with_the_ollama_client(
    stack: ComposeStack,
) -> None:
    log = stack.logs("ollama-init")
    assert f"creating qwen3-duet from /test-modelfiles/{COMMITTED_MODELFILE}" in log, log
    assert "qwen3-duet is ready" in log, log

    # What Ollama holds is what the Modelfile says: its template and parameters, exactly.
    def ollama_show(flag: str) -> str:
        return stack.compose("exec", "-T", "ollama", "ollama", "show", "qwen3-duet", flag)

    modelfile = tiny_modelfile(stack.paths)
    template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert ollama_show("--template").strip() == template.strip()
    wanted = sorted(
        " ".join(line.split()[1:])
        for line in modelfile.splitlines()
        if line.startswith("PARAMETER")
    )
    shown = sorted(" ".join(line.split()) for line in ollama_show("--parameters").splitlines())
    assert shown == wanted

    # The web UI sees it through its own health check.
    health = httpx.get(f"{stack.url}/health", timeout=30).json()
    ollama = next(e for e in health["engines"] if e["engine"] == "ollama")
    assert ollama["up"] and "qwen3-duet:latest" in ollama["models"], ollama


def test_only_the_web_ui_port_is_published_and_only_on_loopback(stack: ComposeStack) -> None:
    bindings = {
        name: {
            port: [(b["HostIp"], b["HostPort"]) for b in host or []]
            for port, host in (container.attrs["NetworkSettings"]["Ports"] or {}).items()
        }
        for name, container in stack.containers().items()
    }
    assert bindings["webui"] == {"8080/tcp": [("127.0.0.1", str(stack.webui_port))]}
    for name in ENGINES:
        exposed = bindings[name]
        assert exposed and all(host == [] for host in exposed.values()), (name, exposed)

    assert httpx.get(f"{stack.url}/health", timeout=30).status_code == 200
    # The host's own outside address does not lead to the web UI.
    outside = outside_address()
    with pytest.raises(OSError), socket.create_connection((outside, stack.webui_port), timeout=5):
        pass


def outside_address() -> str:
    """This host's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        return str(probe.getsockname()[0])


def test_duet_doctor_finds_the_containers_and_no_nvidia_runtime(
    stack: ComposeStack, tmp_path: Path
) -> None:
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    done = subprocess.run(
        [
            str(ROOT / ".venv/bin/duet"),
            "doctor",
            f"--project={PROJECT}",
            f"--env-file={empty_env}",
            f"--compose-file={ROOT / 'docker-compose.yml'}",
        ],
        env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": DOCKER_HOST, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = done.stdout
    assert done.returncode == 1, report  # no GPU here: that is a problem for the GPU stack
    assert re.search(r"^ok +Docker engine: Docker 20\.10\.\d+\S* answers$", report, re.M), report
    assert re.search(r"^PROBLEM +NVIDIA runtime: Docker has no nvidia runtime", report, re.M)
    for service in ("vllm", "ollama", "webui"):
        assert re.search(rf"^ok +{service}: running and healthy$", report, re.M), report
    assert re.search(r"^ok +ollama-init: finished its work \(exit code 0\)$", report, re.M)


async def ask_france(page: Page, engine: str) -> int:
    """Ask the tiny model's France question with thinking on; the answer's id once complete."""
    answer_id = await send(page, FRANCE, engine, thinking=True)
    await wait_for_status(page, answer_id, "complete")
    return answer_id


@pytest.mark.parametrize("engine", ["vllm", "ollama", "ollama-openai"])
@pytest.mark.browser
@pytest.mark.asyncio(loop_scope="session")
async def test_an_answer_streams_from_each_engine_through_the_web_ui(
    page: Page, webui: RunningApp, engine: str
) -> None:
    problems = await open_chat(page, webui)
    answer_id = await ask_france(page, engine)
    article = page.locator(f"#message-{answer_id}")
    await article.locator("details.reasoning summary").click()
    assert "capital of France" in await article.locator(".reasoning-text").inner_text()
    assert await article.locator(".answer strong").inner_text() == "Paris"
    assert problems == [], problems


@pytest.mark.browser
@pytest.mark.asyncio(loop_scope="session")
async def test_stopping_ollama_mid_answer_keeps_the_partial_answer_and_recovers(
    page: Page, webui: RunningApp, stack: ComposeStack
) -> None:
    problems = await open_chat(page, webui)
    answer_id = await send(page, STORY, "ollama", thinking=False, max_tokens=3000)
    await page.wait_for_function(
        f"() => document.querySelector('#message-{answer_id} .streaming-text')"
        "?.textContent.length > 0",
        polling="raf",
    )
    await asyncio.to_thread(stack.compose, "stop", "ollama")
    try:
        await wait_for_status(page, answer_id, "failed")
        article = page.locator(f"#message-{answer_id}")
        shown = await answer_text(page, answer_id)
        error = await article.locator(".message-error").inner_text()
        assert shown, "the partial answer vanished from the page"
        assert "Ollama" in error and "Traceback" not in error, error

        # Stored as it was shown: a reload brings back the partial text and the reason.
        await page.reload()
        assert await answer_text(page, answer_id) == shown
        assert await page.locator(f"#message-{answer_id} .message-error").inner_text() == error
    finally:
        await asyncio.to_thread(stack.compose, "start", "ollama")
    await asyncio.to_thread(stack.wait_ready, {"ollama": "healthy"})
    await ask_france(page, "ollama")
    assert problems == [], problems


@pytest.mark.browser
@pytest.mark.asyncio(loop_scope="session")
async def test_a_conversation_survives_compose_down_and_up(
    page: Page, webui: RunningApp, stack: ComposeStack
) -> None:
    await open_chat(page, webui)
    answer_id = await ask_france(page, "vllm")
    conversation_url = page.url
    assert "/c/" in conversation_url, conversation_url
    shown = await answer_text(page, answer_id)

    await asyncio.to_thread(stack.compose, "down")
    assert stack.containers() == {}
    await asyncio.to_thread(stack.up)
    await asyncio.to_thread(stack.wait_ready, READY)

    await page.goto(conversation_url)
    assert await answer_text(page, answer_id) == shown
    assert FRANCE in await page.locator("#messages").inner_text()
