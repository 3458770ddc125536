"""docker-compose.yml and its variants, checked by a real Compose implementation.

`compose config` resolves the files the way `docker compose up` would (tests/compose_config.py),
without needing a Docker engine, so this runs in CI. tests/test_compose_engines.py checks what
the resolved files ask of the engines against the engines' own code.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from compose_config import ROOT, VARIANTS, find_compose, resolved, run_config
from duet.settings import Settings, env_name

ENGINES = {"vllm", "ollama"}
ONE_SHOT_JOBS = {"ollama-init"}


@pytest.fixture(scope="module")
def compose() -> Path:
    return find_compose()


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_resolves_with_the_expected_services(
    compose: Path, variant: str, tmp_path: Path
) -> None:
    overrides, expected = VARIANTS[variant]
    config = resolved(compose, overrides, tmp_path)
    services = config["services"]
    assert set(services) == expected

    # Only the web UI is reachable from outside, and only on loopback unless WEBUI_BIND says so.
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"webui"}
    (port,) = services["webui"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8080", 8080)
    for name in set(services) - {"webui"}:
        assert set(services[name]["networks"]) == {"engines"}, name

    # Every long-running service has a healthcheck; one-shot jobs are awaited to completion.
    for name, service in services.items():
        if name in ONE_SHOT_JOBS:
            assert service["restart"] == "no"
            waited = services["webui"]["depends_on"][name]["condition"]
            assert waited == "service_completed_successfully"
        else:
            assert service["healthcheck"]["test"][0] == "CMD", name
    if "ollama" in services:
        assert services["ollama"]["healthcheck"]["test"] == ["CMD", "ollama", "list"]

    # The web UI waits for every engine that runs, and for nothing that does not.
    assert set(services["webui"]["depends_on"]) == expected - {"webui"}

    # GPU reservations on the GPU variants' engines, none on the CPU demo.
    for name in ENGINES & set(services):
        devices = gpu_devices(services[name])
        if variant.startswith("cpu"):
            assert devices == [], name
        else:
            assert [(d["driver"], d["capabilities"]) for d in devices] == [("nvidia", ["gpu"])]


@pytest.mark.parametrize("variant", VARIANTS)
def test_images_are_pinned(compose: Path, variant: str, tmp_path: Path) -> None:
    overrides, _ = VARIANTS[variant]
    for name, service in resolved(compose, overrides, tmp_path)["services"].items():
        if "build" in service:
            continue
        repository, _, tag = service["image"].rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {service['image']}"


def test_gpu_stack_starts_vllm_before_ollama(compose: Path, tmp_path: Path) -> None:
    services = resolved(compose, [], tmp_path)["services"]
    assert services["ollama"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert services["ollama-init"]["depends_on"]["ollama"]["condition"] == "service_healthy"
    command = services["vllm"]["command"]
    assert "--reasoning-parser=qwen3" in command
    assert "--model=Qwen/Qwen3-14B-AWQ" in command
    assert "--gpu-memory-utilization=0.52" in command
    assert "--max-model-len=6144" in command
    assert services["vllm"]["shm_size"]
    volumes = {volume["target"] for volume in services["vllm"]["volumes"]}
    assert "/root/.cache/huggingface" in volumes


@pytest.mark.parametrize("variant", [name for name, (_, run) in VARIANTS.items() if "vllm" in run])
def test_every_vllm_variant_calls_tools(compose: Path, variant: str, tmp_path: Path) -> None:
    """Without these flags vLLM answers 400 to any request with tools (Qwen's own vLLM guide
    uses the hermes parser for Qwen3); test_compose_engines checks vLLM accepts them."""
    overrides, _ = VARIANTS[variant]
    command = resolved(compose, overrides, tmp_path)["services"]["vllm"]["command"]
    assert "--enable-auto-tool-choice" in command
    assert "--tool-call-parser=hermes" in command


@pytest.mark.parametrize("variant", [name for name, (_, run) in VARIANTS.items() if "vllm" in run])
def test_the_web_ui_lets_a_vllm_connection_go_before_vllm_does(
    compose: Path, variant: str, tmp_path: Path
) -> None:
    """A chat sent on a connection vLLM is closing fails (a POST is not retried), so the web
    UI's idle limit toward vLLM must be under vLLM's own (VLLM_HTTP_TIMEOUT_KEEP_ALIVE), in
    every variant that runs vLLM; test_answer_path checks vLLM keeps what it is told."""
    overrides, _ = VARIANTS[variant]
    services = resolved(compose, overrides, tmp_path)["services"]
    vllm_idle = float(services["vllm"]["environment"]["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"])
    duet_idle = float(services["webui"]["environment"]["DUET_VLLM_CONNECTION_IDLE_SECONDS"])
    assert 0 < duet_idle < vllm_idle


def test_cpu_demo_serves_the_small_model(compose: Path, tmp_path: Path) -> None:
    services = resolved(compose, ["compose/cpu.yml"], tmp_path)["services"]
    assert services["vllm"]["image"].startswith("vllm/vllm-openai-cpu:")
    assert "--model=Qwen/Qwen3-0.6B" in services["vllm"]["command"]
    assert not any(arg.startswith("--gpu-memory") for arg in services["vllm"]["command"])
    assert services["webui"]["environment"]["DUET_VLLM_MODEL"] == "Qwen/Qwen3-0.6B"
    modelfile = services["ollama-init"]["environment"]["OLLAMA_MODELFILE"]
    assert (ROOT / "modelfiles" / Path(modelfile).name).is_file()


def test_webui_gets_every_duet_setting(compose: Path, tmp_path: Path) -> None:
    environment = resolved(compose, [], tmp_path)["services"]["webui"]["environment"]
    for f in fields(Settings):
        assert env_name(f.name) in environment, (
            f"docker-compose.yml: webui lacks {env_name(f.name)}"
        )
    assert environment["DUET_HOST"] == "0.0.0.0"
    assert environment["DUET_VLLM_URL"] == "http://vllm:8000"
    assert environment["DUET_OLLAMA_URL"] == "http://ollama:11434"
    # Left unset, the container falls back to Duet's own default; set, it passes through.
    assert environment["DUET_READ_TIMEOUT"] is None
    passed = resolved(compose, [], tmp_path, DUET_READ_TIMEOUT="42")["services"]["webui"]
    assert passed["environment"]["DUET_READ_TIMEOUT"] == "42"


def test_knobs_reach_the_services(compose: Path, tmp_path: Path) -> None:
    config = resolved(
        compose,
        [],
        tmp_path,
        VLLM_MODEL="Qwen/Qwen3-14B-FP8",
        WEBUI_BIND="0.0.0.0",
        ENGINES_NETWORK_INTERNAL="true",
    )
    services = config["services"]
    assert "--model=Qwen/Qwen3-14B-FP8" in services["vllm"]["command"]
    assert services["webui"]["environment"]["DUET_VLLM_MODEL"] == "Qwen/Qwen3-14B-FP8"
    assert services["webui"]["ports"][0]["host_ip"] == "0.0.0.0"
    assert config["networks"]["engines"]["internal"] is True


def test_compose_rejects_a_bad_knob_value(compose: Path, tmp_path: Path) -> None:
    done = run_config(compose, [], tmp_path, ENGINES_NETWORK_INTERNAL="maybe")
    assert done.returncode != 0
    assert "invalid boolean" in done.stderr
