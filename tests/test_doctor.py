"""`duet doctor`: the real docker SDK with no engine behind it, and the memory arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
from duet.cli import main
from duet.doctor import (
    GIB,
    MIB,
    OLLAMA_SOURCES,
    QWEN3_14B,
    VLLM_MODELS,
    Gpu,
    check_container,
    check_memory_split,
    check_nvidia_runtime,
    diagnose,
    docker_client,
    kv_bytes_per_token,
    largest_vllm_fraction,
    load_knobs,
    ollama_free_reserve,
    ollama_need,
    parse_nvidia_smi,
    report,
    vllm_kv_budget,
)

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"


@pytest.fixture
def no_docker_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the SDK at a socket nobody listens on, so no engine answers on any machine."""
    host = f"unix://{tmp_path / 'docker.sock'}"
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


@pytest.fixture
def no_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_docker_client_without_engine_says_where_it_looked(no_docker_engine: str) -> None:
    client, finding = docker_client()
    assert client is None
    assert finding.status == "problem"
    assert no_docker_engine in finding.message
    assert "cannot reach the Docker engine" in finding.message
    assert "systemctl start docker" in finding.fix
    assert "DOCKER_HOST" in finding.fix


def test_doctor_without_engine_prints_the_fix_and_exits_nonzero(
    no_docker_engine: str, no_nvidia_smi: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["doctor", "--compose-file", str(COMPOSE_FILE), "--env-file", "/nonexistent"])
    out = capsys.readouterr().out
    assert code == 1
    assert "PROBLEM  Docker engine: cannot reach the Docker engine" in out
    assert "PROBLEM  GPU: no NVIDIA driver found" in out
    assert out.rstrip().endswith("2 problems found")


def test_doctor_cpu_skips_gpu_checks_but_still_needs_docker(
    no_docker_engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["doctor", "--cpu", "--compose-file", str(COMPOSE_FILE)])
    out = capsys.readouterr().out
    assert code == 1
    assert "GPU" not in out
    assert out.rstrip().endswith("1 problem found")


def test_doctor_outside_the_repository_says_where_to_run(
    no_docker_engine: str, tmp_path: Path
) -> None:
    findings = diagnose(tmp_path / "docker-compose.yml", tmp_path / ".env", "duet", cpu=True)
    configuration = [f for f in findings if f.check == "configuration"]
    assert configuration and "beside docker-compose.yml" in configuration[0].fix


def test_kv_cache_per_token_for_qwen3_14b() -> None:
    # 40 layers x 8 KV heads x 128 dims x (K and V) x 2 bytes = 160 KiB per token.
    assert kv_bytes_per_token(QWEN3_14B) == 163_840
    assert kv_bytes_per_token(QWEN3_14B, 34 / 32) == 87_040


def test_ollama_need_adds_weights_kv_per_slot_and_overhead() -> None:
    model = OLLAMA_SOURCES["hf.co/Qwen/Qwen3-14B-GGUF:Q4_K_M"]
    one = ollama_need(model, 8192, 1, "f16", overhead=0)
    two = ollama_need(model, 8192, 2, "f16", overhead=0)
    assert one == model.weights_bytes + 163_840 * 8192
    assert two - one == 163_840 * 8192
    assert ollama_need(model, 8192, 1, "q8_0", overhead=0) < one


def test_vllm_budget_and_largest_fraction() -> None:
    assert vllm_kv_budget(24 * GIB, 0.5, 10 * GIB, overhead=1 * GIB) == 1 * GIB
    # Ollama's 12 GiB and vLLM's CUDA context (0.5 GiB, outside its share) leave 11.5 of 24.
    assert largest_vllm_fraction(24 * GIB, 12 * GIB) == 0.47
    assert largest_vllm_fraction(10 * GIB, 11 * GIB) == 0.0


def test_parse_nvidia_smi() -> None:
    gpus = parse_nvidia_smi("0, NVIDIA GeForce RTX 4090, 24564, 312\n1, NVIDIA A100, 81920, 0\n")
    assert gpus[0] == Gpu("0", "NVIDIA GeForce RTX 4090", 24564 * MIB, 312 * MIB)
    assert gpus[1].total_bytes == 80 * GIB


def compose_knobs(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return load_knobs(COMPOSE_FILE, tmp_path / "absent.env", environ=overrides)


def test_default_split_fits_a_24_gb_card(tmp_path: Path) -> None:
    card = Gpu("0", "RTX 4090", 24564 * MIB, 300 * MIB)
    findings = check_memory_split(
        card,
        compose_knobs(tmp_path),
        VLLM_MODELS["Qwen/Qwen3-14B-AWQ"],
        OLLAMA_SOURCES["hf.co/Qwen/Qwen3-14B-GGUF:Q4_K_M"],
        vllm_running=False,
    )
    assert [f.status for f in findings] == ["ok", "ok"], report(findings)


def test_the_split_leaves_what_ollama_keeps_free(tmp_path: Path) -> None:
    """The old 24 GB default (0.55 for vLLM, 8,192-token contexts) left Ollama its estimated
    need but not the 457 MiB Ollama 0.24 keeps free, nor the 1 GiB that 0.30's fit logic keeps."""
    card = Gpu("0", "RTX 4090", 24564 * MIB, 300 * MIB)
    models = (VLLM_MODELS["Qwen/Qwen3-14B-AWQ"], OLLAMA_SOURCES["hf.co/Qwen/Qwen3-14B-GGUF:Q4_K_M"])
    old = {"VLLM_GPU_MEMORY_UTILIZATION": "0.55", "VLLM_MAX_MODEL_LEN": "8192"}
    old["OLLAMA_CONTEXT_LENGTH"] = "8192"
    findings = check_memory_split(card, compose_knobs(tmp_path, **old), *models, False)
    ollama = next(f for f in findings if f.check == "Ollama share")
    assert ollama.status == "problem" and "layers on the CPU" in ollama.message
    assert ollama_free_reserve("ollama/ollama:0.24.0") == 457 * MIB
    assert ollama_free_reserve("ollama/ollama:0.30.0") == 1 * GIB
    assert ollama_free_reserve("ollama/ollama:latest") == 1 * GIB
    newer = compose_knobs(tmp_path, OLLAMA_IMAGE="ollama/ollama:0.34.0")
    spare = [f.message for f in check_memory_split(card, newer, *models, False)]
    assert "keeps 1.00 GiB free" in spare[1]


def test_split_on_a_16_gb_card_names_the_knobs_to_change(tmp_path: Path) -> None:
    card = Gpu("0", "RTX 4080", 16376 * MIB, 0)
    findings = check_memory_split(
        card,
        compose_knobs(tmp_path),
        VLLM_MODELS["Qwen/Qwen3-14B-AWQ"],
        OLLAMA_SOURCES["hf.co/Qwen/Qwen3-14B-GGUF:Q4_K_M"],
        vllm_running=False,
    )
    problems = {f.check: f for f in findings if f.status == "problem"}
    assert "VLLM_MAX_MODEL_LEN" in problems["vLLM share"].fix
    assert "VLLM_GPU_MEMORY_UTILIZATION to at most" in problems["Ollama share"].fix


def test_busy_card_blocks_vllm_start_only_before_vllm_runs(tmp_path: Path) -> None:
    card = Gpu("0", "RTX 4090", 24564 * MIB, 16000 * MIB)
    knobs = compose_knobs(tmp_path)
    before = check_memory_split(card, knobs, None, None, vllm_running=False)
    after = check_memory_split(card, knobs, None, None, vllm_running=True)
    assert [f.check for f in before] == ["free memory"]
    assert after == []


def test_load_knobs_precedence(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("VLLM_MAX_MODEL_LEN=4096\nOLLAMA_CONTEXT_LENGTH=4096\n# WEBUI_PORT=1\n")
    knobs = load_knobs(COMPOSE_FILE, env_file, environ={"OLLAMA_CONTEXT_LENGTH": "2048"})
    assert knobs["VLLM_MAX_MODEL_LEN"] == "4096"  # .env over the Compose default
    assert knobs["OLLAMA_CONTEXT_LENGTH"] == "2048"  # the shell over .env, as Compose does
    assert knobs["WEBUI_PORT"] == "8080"  # a commented line changes nothing
    assert knobs["VLLM_GPU_MEMORY_UTILIZATION"] == "0.52"


def test_nvidia_runtime_check() -> None:
    assert check_nvidia_runtime({"Runtimes": {"runc": {}, "nvidia": {}}}).status == "ok"
    missing = check_nvidia_runtime({"Runtimes": {"runc": {}}})
    assert missing.status == "problem"
    assert "nvidia-ctk runtime configure" in missing.fix


@pytest.mark.parametrize(
    ("state", "status", "text"),
    [
        ({"Status": "running", "Health": {"Status": "healthy"}}, "ok", "healthy"),
        ({"Status": "running", "Health": {"Status": "starting"}}, "note", "starting"),
        (
            {"Status": "running", "Health": {"Status": "unhealthy", "Log": [{"Output": "boom"}]}},
            "problem",
            "boom",
        ),
        ({"Status": "exited", "ExitCode": 0}, "ok", "exit code 0"),
        ({"Status": "exited", "ExitCode": 1}, "problem", "code 1"),
        ({"Status": "restarting"}, "problem", "restarting"),
    ],
)
def test_check_container(state: dict[str, object], status: str, text: str) -> None:
    finding = check_container("ollama-init", state)
    assert finding.status == status
    assert text in finding.message
