"""The committed Modelfiles are what the generator makes today, and bad options get clear errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import ollama
import pytest
from duet.cli import main
from duet.modelfile import (
    MODELFILES_DIR,
    QWEN3_TEMPLATE,
    ModelfileError,
    ModelfileSpec,
    SourceKind,
    classify_source,
    create_model,
    render_committed_modelfiles,
    render_modelfile,
    spec_for_mode,
    write_committed_modelfiles,
)


def test_committed_modelfiles_are_fresh() -> None:
    fresh = render_committed_modelfiles()
    committed = {path.name for path in MODELFILES_DIR.glob("*.Modelfile")}
    assert committed == set(fresh), "modelfiles/ holds files the generator does not make"
    for name, text in fresh.items():
        assert (MODELFILES_DIR / name).read_text(encoding="utf-8") == text, (
            f"modelfiles/{name} is stale: run `duet modelfile --write-committed` at the repo root"
        )


def test_committed_modelfiles_name_the_compose_sources() -> None:
    fresh = render_committed_modelfiles()
    assert "FROM hf.co/Qwen/Qwen3-14B-GGUF:Q4_K_M\n" in fresh["qwen3-14b.Modelfile"]
    assert "FROM hf.co/Qwen/Qwen3-0.6B-GGUF:Q8_0\n" in fresh["qwen3-0.6b.Modelfile"]
    for text in fresh.values():
        assert f'TEMPLATE """{QWEN3_TEMPLATE}"""' in text
        # The context is left to OLLAMA_CONTEXT_LENGTH in docker-compose.yml.
        assert "num_ctx" not in text


def test_write_committed_modelfiles_writes_what_render_makes(tmp_path: Path) -> None:
    written = write_committed_modelfiles(tmp_path)
    fresh = render_committed_modelfiles()
    assert {path.name for path in written} == set(fresh)
    for path in written:
        assert path.read_text(encoding="utf-8") == fresh[path.name]


def test_write_committed_modelfiles_needs_the_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelfileError, match="no such directory"):
        write_committed_modelfiles(tmp_path / "missing")


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("qwen3", SourceKind.OLLAMA_LIBRARY),
        ("qwen3:14b", SourceKind.OLLAMA_LIBRARY),
        ("library/qwen3:0.6b-q8_0", SourceKind.OLLAMA_LIBRARY),
        ("hf.co/Qwen/Qwen3-14B-GGUF:Q4_K_M", SourceKind.HUGGING_FACE),
        ("huggingface.co/Qwen/Qwen3-0.6B-GGUF", SourceKind.HUGGING_FACE),
    ],
)
def test_classify_source_accepts_registry_names(source: str, kind: SourceKind) -> None:
    assert classify_source(source) is kind


def test_classify_source_checks_local_paths_against_the_modelfile_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "qwen3.gguf").write_bytes(b"GGUF")
    (tmp_path / "weights").mkdir()
    (tmp_path / "notes.txt").write_text("not a model")
    assert classify_source("./qwen3.gguf", tmp_path) is SourceKind.LOCAL_PATH
    assert classify_source(str(tmp_path / "qwen3.gguf")) is SourceKind.LOCAL_PATH
    assert classify_source("./weights", tmp_path) is SourceKind.LOCAL_PATH
    with pytest.raises(ModelfileError, match="no such file"):
        classify_source("./absent.gguf", tmp_path)
    with pytest.raises(ModelfileError, match=r"\.gguf file or a directory"):
        classify_source("./notes.txt", tmp_path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "one word"),
        ("qwen3 14b", "one word"),
        ("hf.co/Qwen3-14B-GGUF", "hf.co/USER/REPOSITORY"),
        ("hf.co/Qwen/Qwen3-14B-GGUF:", "hf.co/USER/REPOSITORY"),
        ("qwen3:", "expected an Ollama library tag"),
        ("a/b/c/d", "expected an Ollama library tag"),
    ],
)
def test_classify_source_rejects_malformed_sources(source: str, message: str) -> None:
    with pytest.raises(ModelfileError, match=message):
        classify_source(source)


def test_modes_bake_in_qwen3_sampling_and_align_repeat_penalty() -> None:
    thinking = render_modelfile(spec_for_mode("qwen3:14b", "thinking"))
    plain = render_modelfile(spec_for_mode("qwen3:14b", "non-thinking"))
    assert "PARAMETER temperature 0.6\nPARAMETER top_p 0.95\n" in thinking
    assert "PARAMETER temperature 0.7\nPARAMETER top_p 0.8\n" in plain
    for text in (thinking, plain):
        assert "PARAMETER top_k 20\n" in text
        assert "PARAMETER repeat_penalty 1\n" in text
    with pytest.raises(ModelfileError, match="mode"):
        spec_for_mode("qwen3:14b", "fast")  # type: ignore[arg-type]


def test_options_render_context_stop_and_system() -> None:
    spec = spec_for_mode("qwen3:14b", context_length=8192, stop=("<|im_end|>",), system="Be brief.")
    text = render_modelfile(spec)
    assert 'SYSTEM """Be brief."""\n' in text
    assert "PARAMETER num_ctx 8192\n" in text
    assert text.count("PARAMETER stop") == 1
    assert "num_thread" not in text, "Ollama picks its thread count unless told"
    threaded = render_modelfile(ModelfileSpec("qwen3", threads=1))
    assert "PARAMETER num_thread 1\n" in threaded


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ModelfileSpec("qwen3", context_length=0), "context 0"),
        (ModelfileSpec("qwen3", context_length=200_000), "context 200000"),
        (ModelfileSpec("qwen3", threads=0), "threads 0"),
        (ModelfileSpec("qwen3", stop=()), "at least one"),
        (ModelfileSpec("qwen3", stop=('say "stop"',)), "double quotes"),
        (ModelfileSpec("qwen3", stop=("",)), "non-empty"),
        (ModelfileSpec("qwen3", system='He said """hi"""'), "system prompt"),
        (ModelfileSpec("qwen3", sampling={"temperature": -1.0}), "must not be negative"),
        (ModelfileSpec("qwen3", sampling={"top p": 0.9}), "not an Ollama parameter"),
    ],
)
def test_render_rejects_what_ollama_would_misread(spec: ModelfileSpec, message: str) -> None:
    with pytest.raises(ModelfileError, match=message):
        render_modelfile(spec)


def test_cli_reports_a_bad_source_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modelfile", "hf.co/nope"]) == 2
    assert "hf.co/USER/REPOSITORY" in capsys.readouterr().err


def test_cli_writes_a_modelfile(tmp_path: Path) -> None:
    (tmp_path / "qwen3.gguf").write_bytes(b"GGUF")
    out = tmp_path / "local.Modelfile"
    code = main(["modelfile", "./qwen3.gguf", "-o", str(out), "--mode", "non-thinking"])
    assert code == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Generated by `duet modelfile`")
    assert "FROM ./qwen3.gguf\n" in text
    assert "PARAMETER temperature 0.7\n" in text


def test_cli_reads_the_system_prompt_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = tmp_path / "system.txt"
    prompt.write_text("You are Duet's assistant.", encoding="utf-8")
    assert main(["modelfile", "qwen3:14b", "--system-file", str(prompt)]) == 0
    assert 'SYSTEM """You are Duet\'s assistant."""' in capsys.readouterr().out


class RecordingOllama:
    """The official client over a transport that records each request and answers as Ollama
    does, so a test sees the bytes `create_model` puts on the wire."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.client = ollama.Client(host="http://ollama.test", transport=httpx.MockTransport(self))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/create":
            return httpx.Response(200, json={"status": "success"})
        return httpx.Response(201)  # a blob upload

    def create_body(self) -> dict:
        (create,) = [r for r in self.requests if r.url.path == "/api/create"]
        return json.loads(create.content)


def modelfile_parameters(text: str) -> dict[str, list[str]]:
    """The PARAMETER lines of a Modelfile, as Ollama's parser reads them: name -> values."""
    parameters: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("PARAMETER "):
            _, name, value = line.split(" ", 2)
            parameters.setdefault(name, []).append(value.strip('"'))
    return parameters


def test_create_model_sends_what_the_modelfile_says(tmp_path: Path) -> None:
    """The create request carries the parts of the Modelfile the same spec renders, and a local
    GGUF file goes up as a blob named by its digest, as `ollama create -f` sends them."""
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"GGUF and some weights")
    spec = ModelfileSpec(str(weights), context_length=4096, threads=1, system="Be brief.")
    recording = RecordingOllama()
    create_model(recording.client, "tiny", spec)
    digest = "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    blob = recording.requests[0]
    assert (blob.method, blob.url.path, blob.read()) == (
        "POST", f"/api/blobs/{digest}", weights.read_bytes()
    )  # fmt: skip
    body = recording.create_body()
    assert body["model"] == "tiny" and body["files"] == {"tiny.gguf": digest}
    assert "from" not in body
    assert body["template"] == QWEN3_TEMPLATE and body["system"] == "Be brief."
    sent = {
        name: [str(v) for v in value] if isinstance(value, list) else [f"{value:g}"]
        for name, value in body["parameters"].items()
    }
    assert sent == modelfile_parameters(render_modelfile(spec))
    assert sent["num_thread"] == ["1"] and sent["num_ctx"] == ["4096"]


def test_create_model_names_a_registry_source_and_refuses_a_directory(tmp_path: Path) -> None:
    recording = RecordingOllama()
    create_model(recording.client, "qwen3-duet", spec_for_mode("hf.co/Qwen/Qwen3-0.6B-GGUF:Q8_0"))
    body = recording.create_body()
    assert body["from"] == "hf.co/Qwen/Qwen3-0.6B-GGUF:Q8_0" and "files" not in body
    assert "system" not in body
    (tmp_path / "weights").mkdir()
    with pytest.raises(ModelfileError, match="ollama create NAME -f"):
        create_model(recording.client, "local", ModelfileSpec(str(tmp_path / "weights")))
