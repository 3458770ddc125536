"""`duet doctor --stack`: the verdicts as functions, then the whole check against real engines.

Against the CPU dev stack every line passes (no GPU there, so the speed lines only note the
rate). Against an Ollama model created with a deliberately wrong TEMPLATE, the prompt-token
lines fail and name the conversation and both counts: the check can tell.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest
from duet.cli import main
from duet.devstack import TINY_MODEL_NAME, DevStack, tiny_modelfile_spec
from duet.modelfile import QWEN3_TEMPLATE, model_parameters
from duet.stackcheck import (
    CONVERSATIONS,
    GPU_BANDWIDTH_GBS,
    Stream,
    bandwidth_of,
    speed_finding,
    streaming_finding,
)

RTX_4090 = "NVIDIA GeForce RTX 4090"


@pytest.mark.parametrize(
    ("reported", "known"),
    [
        (RTX_4090, "GeForce RTX 4090"),
        ("NVIDIA GeForce RTX 3090", "GeForce RTX 3090"),
        ("NVIDIA GeForce RTX 3090 Ti", "GeForce RTX 3090 Ti"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA H100 80GB HBM3", "H100 80GB HBM3"),
    ],
)
def test_a_card_is_matched_by_its_whole_name(reported: str, known: str) -> None:
    assert bandwidth_of(reported) == GPU_BANDWIDTH_GBS[known] * 1e9


def test_an_unknown_card_has_no_bandwidth() -> None:
    assert bandwidth_of("NVIDIA GeForce GTX 1080") is None


def test_decode_speed_against_the_bandwidth_ceiling() -> None:
    # 9 GB of weights on a 1,008 GB/s card: at most 112 tokens a second.
    fast = Stream(tokens=101, chunks=101, span=1.25)  # 80 tokens/s
    slow = Stream(tokens=101, chunks=101, span=5.0)  # 20 tokens/s
    ok = speed_finding("ollama", fast, RTX_4090, 9e9)
    assert ok.status == "ok" and "71% of the 112 tokens/s" in ok.message
    problem = speed_finding("ollama", slow, RTX_4090, 9e9)
    assert problem.status == "problem" and "ollama ps" in problem.fix
    none = speed_finding("vllm", fast, None, 9e9)
    assert none.status == "note" and "no GPU found" in none.message
    assert speed_finding("vllm", fast, RTX_4090, None).status == "note"


def test_a_stream_in_bursts_is_a_problem() -> None:
    assert streaming_finding("vllm", Stream(tokens=128, chunks=120, span=1.0)).status == "ok"
    buffered = streaming_finding("vllm", Stream(tokens=128, chunks=8, span=1.0))
    assert buffered.status == "problem"
    assert "128 tokens arrived in 8 chunks" in buffered.message
    assert streaming_finding("vllm", Stream(tokens=3, chunks=1, span=0.1)).status == "note"


# --- against the real engines --------------------------------------------------------------------


def stack_doctor(
    stack: DevStack,
    ollama_model: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> tuple[int, dict[str, tuple[str, str]]]:
    """`duet doctor --stack` as a user runs it, configured through the environment: its exit
    code, and its lines as check → (mark, message)."""
    monkeypatch.setenv("DUET_VLLM_URL", stack.vllm_url)
    monkeypatch.setenv("DUET_OLLAMA_URL", stack.ollama_url)
    monkeypatch.setenv("DUET_VLLM_MODEL", TINY_MODEL_NAME)
    monkeypatch.setenv("DUET_OLLAMA_MODEL", ollama_model)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: the dev engines run on the CPU
    capsys.readouterr()
    code = main(["doctor", "--stack"])
    lines = {}
    for line in capsys.readouterr().out.splitlines():
        if match := re.match(r"^(ok|PROBLEM|note)\s+([^:]+): (.*)$", line):
            lines[match[2]] = (match[1], match[3])
    return code, lines


PARITY_LINES = [f"prompt tokens, {conversation.name}" for conversation in CONVERSATIONS]
ENGINE_LINES = [
    f"{kind}, {engine}"
    for engine in ("vLLM", "Ollama")
    for kind in ("thinking", "streaming", "decode speed")
]


@pytest.mark.engines
def test_every_line_passes_on_the_dev_stack(
    dev_stack: DevStack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    code, lines = stack_doctor(dev_stack, TINY_MODEL_NAME, monkeypatch, capsys, tmp_path)
    assert set(lines) == {"vLLM", "Ollama", *PARITY_LINES, *ENGINE_LINES}
    problems = {check: message for check, (mark, message) in lines.items() if mark == "PROBLEM"}
    assert code == 0 and not problems, problems
    # The dev stack runs the pinned releases, and can be checked on every point but the speed
    # ceiling, for which it has no GPU.
    assert "the release Duet's tests ran" in lines["vLLM"][1]
    assert "the release Duet's tests ran" in lines["Ollama"][1]
    noted = {check for check, (mark, _) in lines.items() if mark == "note"}
    assert noted == {"decode speed, vLLM", "decode speed, Ollama"}
    assert "no GPU found" in lines["decode speed, vLLM"][1]


# A classic Modelfile mistake: the TEMPLATE puts words of its own into every user turn.
WRONG_TEMPLATE = QWEN3_TEMPLATE.replace(
    "<|im_start|>{{ .Role }}\n{{ .Content }}",
    "<|im_start|>{{ .Role }}\nThe user says: {{ .Content }}",
)
WRONG_MODEL = "qwen3-duet-wrong-template"


@pytest.fixture
def wrong_template_model(dev_stack: DevStack) -> Iterator[str]:
    """The tiny model in the test's Ollama under a TEMPLATE that differs from its chat
    template, created through the official client as the dev stack creates the right one,
    and deleted afterwards."""
    assert WRONG_TEMPLATE != QWEN3_TEMPLATE
    spec = tiny_modelfile_spec(dev_stack.paths)
    with ollama.Client(host=dev_stack.ollama_url, timeout=600, trust_env=False) as client:
        digest = client.create_blob(dev_stack.paths.tiny_gguf)
        client.create(
            WRONG_MODEL,
            files={dev_stack.paths.tiny_gguf.name: digest},
            template=WRONG_TEMPLATE,
            parameters=model_parameters(spec),
        )
        try:
            yield WRONG_MODEL
        finally:
            client.delete(WRONG_MODEL)


@pytest.mark.engines
def test_a_wrong_template_fails_the_parity_lines_with_both_counts(
    dev_stack: DevStack,
    wrong_template_model: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    code, lines = stack_doctor(dev_stack, wrong_template_model, monkeypatch, capsys, tmp_path)
    assert code == 1
    assert lines["Ollama"][0] == "ok", lines["Ollama"]
    for check in PARITY_LINES:
        mark, message = lines[check]
        counts = re.findall(r"thinking (on|off): vLLM (\d+) prompt tokens, Ollama (\d+)", message)
        assert mark == "PROBLEM" and counts, (check, message)
        assert all(vllm != ollama_count for _, vllm, ollama_count in counts), message
