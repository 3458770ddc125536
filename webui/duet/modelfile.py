"""Ollama Modelfiles for Qwen3, with a TEMPLATE that renders what Qwen3's chat template renders.

Why our own TEMPLATE: vLLM renders prompts with the Hugging Face chat template shipped beside the
weights, Ollama with the Go template in the Modelfile. If the two disagree by one newline, the same
conversation costs a different number of prompt tokens and the model sees a prompt it was not
trained on, and every side-by-side number is skewed. The template below mirrors Qwen3's format
rule for rule (see `duet/tinymodel/qwen3_chat_template.jinja` for the Jinja twin):

- the first system message opens the prompt; later system messages stay in place;
- `<think>` blocks are rendered only for assistant turns after the last user turn, so reasoning
  of earlier turns is dropped;
- tool results are user turns wrapped in `<tool_response>`, consecutive ones share one turn;
- `think: false` pre-fills an empty `<think>\\n\\n</think>\\n\\n`, as `enable_thinking=false` does.

Ollama decides that a model "supports thinking" by finding `{{ .Thinking }}` inside the
`range .Messages` loop, between literal `<think>` and `</think>` text; without that, a request
with `think` is refused with HTTP 400.

Tool calls (Ollama v0.24.0, server/routes.go and tools/): a model whose TEMPLATE uses `.Tools`
"supports tools". With no PARSER line in the Modelfile (Duet writes none: Ollama's built-in
`qwen3-thinking` parser would also take over the thinking, which the TEMPLATE decides today)
Ollama finds calls in the output by a tag it reads off the TEMPLATE, as for the library's qwen3
template (`{{ else if .ToolCalls }}<tool_call>`): the first text inside the first `{{ if }}`
whose condition names `.ToolCalls`, up to its first `{`. Here that text is `<tool_call>`, so
everything the model writes after it is parsed as calls. Anything between that `if` and the tag
(another `if`, a `range` that starts with one) would hide it, and Ollama would then look only for
a bare `{` at the start of the answer: the separator a call needs after content is written
before the `if`.
The tools are written field by field (Ollama's template engine renders `.Function` as a Go
struct, not JSON: ollama#14601) in the order Qwen3's Hugging Face template writes the OpenAI
schema's usual fields (name, description, parameters: type, properties, required), so vLLM and
Ollama read the same prompt for such a tool; fields beyond those are not written.

The Modelfiles Duet ships are generated here too (`write_committed_modelfiles`), so the files in
`modelfiles/` can never drift from this code unnoticed: a test regenerates them and compares.

`create_model` creates a model from a spec through the official `ollama` client. Its `create`
takes the Modelfile's parts as fields (`from_` or `files`, `template`, `system`, `parameters`),
not a Modelfile's text, so both come from the same spec: the create request is what
`ollama create -f` sends for the Modelfile `render_modelfile` writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

import ollama

# Kept in its own file: a Go template is easier to read, diff and paste into Ollama as it is.
QWEN3_TEMPLATE = (Path(__file__).parent / "qwen3_template.gotmpl").read_text(encoding="utf-8")

# Qwen3's model card recommends different sampling for the two modes; Ollama takes one set per
# model, so the Modelfile carries one mode's defaults and Duet sends per-request values.
THINKING_SAMPLING = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0}
NON_THINKING_SAMPLING = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0}
Mode = Literal["thinking", "non-thinking"]
SAMPLING_BY_MODE: dict[str, dict[str, float]] = {
    "thinking": THINKING_SAMPLING,
    "non-thinking": NON_THINKING_SAMPLING,
}
# Ollama applies repeat_penalty 1.1 unless told otherwise; vLLM's repetition_penalty defaults to
# 1.0. Setting 1 here keeps the two engines sampling the same way in a side-by-side comparison.
ENGINE_ALIGNMENT = {"repeat_penalty": 1.0}
STOP_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")

# Qwen3 reaches 131,072 positions only with YaRN rope scaling; 32,768 is its native length.
MAX_CONTEXT = 131072

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
MODELFILES_DIR = REPOSITORY_ROOT / "modelfiles"


class ModelfileError(ValueError):
    """A Modelfile option that Ollama would reject or misread; the message says how to fix it."""


class SourceKind(Enum):
    OLLAMA_LIBRARY = "Ollama library tag"
    HUGGING_FACE = "Hugging Face GGUF"
    LOCAL_PATH = "local path"


# name[:tag], namespace/name[:tag] or host/namespace/name[:tag], as Ollama spells model names.
_OLLAMA_TAG = re.compile(
    r"^(?:[A-Za-z0-9][\w.-]*/){0,2}[A-Za-z0-9][\w.-]*(?::[A-Za-z0-9][\w.-]*)?$"
)
# hf.co/{user}/{repository}[:{quantization}], as `ollama pull` accepts it.
_HUGGING_FACE = re.compile(
    r"^(?:hf\.co|huggingface\.co)/[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(?::[A-Za-z0-9][\w.-]*)?$"
)


def classify_source(source: str, base_dir: Path | None = None) -> SourceKind:
    """Say what kind of model source FROM names, or raise ModelfileError explaining why it is wrong.

    Local paths are checked against the disk, relative to `base_dir` (the Modelfile's directory:
    Ollama resolves a relative FROM path from there).
    """
    if not source or source != source.strip() or any(c.isspace() for c in source):
        raise ModelfileError(f"model source {source!r}: must be one word with no spaces")
    if source.startswith(("hf.co/", "huggingface.co/")):
        if not _HUGGING_FACE.match(source):
            raise ModelfileError(
                f"model source {source!r}: a Hugging Face source looks like "
                "hf.co/USER/REPOSITORY-GGUF[:QUANTIZATION], e.g. hf.co/Qwen/Qwen3-14B-GGUF:Q4_K_M"
            )
        return SourceKind.HUGGING_FACE
    if _looks_like_path(source):
        path = local_source(source, base_dir)
        if path.is_dir():
            return SourceKind.LOCAL_PATH
        if not path.is_file():
            raise ModelfileError(f"model source {source!r}: no such file or directory ({path})")
        if path.suffix.lower() != ".gguf":
            raise ModelfileError(
                f"model source {source!r}: a local model must be a .gguf file or a directory "
                "of safetensors weights"
            )
        return SourceKind.LOCAL_PATH
    if _OLLAMA_TAG.match(source):
        return SourceKind.OLLAMA_LIBRARY
    raise ModelfileError(
        f"model source {source!r}: expected an Ollama library tag (e.g. qwen3:14b), "
        "hf.co/USER/REPOSITORY[:QUANTIZATION], or a path to a .gguf file (e.g. ./qwen3.gguf)"
    )


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.lower().endswith(".gguf")


def local_source(source: str, base_dir: Path | None = None) -> Path:
    """Where a local FROM path points: Ollama resolves a relative one from the Modelfile's
    directory (`base_dir`)."""
    path = Path(source).expanduser()
    return path if path.is_absolute() else (base_dir or Path.cwd()) / path


@dataclass(frozen=True)
class ModelfileSpec:
    """What goes into one generated Modelfile."""

    source: str  # Ollama library tag, hf.co/... GGUF reference, or a local path
    # None leaves num_ctx out, so the server's OLLAMA_CONTEXT_LENGTH decides: one knob for the
    # whole stack instead of a Modelfile value that silently overrides it.
    context_length: int | None = None
    sampling: dict[str, float] = field(default_factory=lambda: dict(THINKING_SAMPLING))
    stop: tuple[str, ...] = STOP_TOKENS
    system: str | None = None
    # Compute threads (num_thread). None lets Ollama use one per physical core.
    threads: int | None = None


def spec_for_mode(
    source: str,
    mode: Mode = "thinking",
    *,
    context_length: int | None = None,
    stop: tuple[str, ...] = STOP_TOKENS,
    system: str | None = None,
) -> ModelfileSpec:
    """A spec with Qwen3's recommended sampling for `mode`, aligned with vLLM's defaults."""
    if mode not in SAMPLING_BY_MODE:
        raise ModelfileError(f"mode {mode!r}: expected one of {', '.join(SAMPLING_BY_MODE)}")
    sampling = {**SAMPLING_BY_MODE[mode], **ENGINE_ALIGNMENT}
    return ModelfileSpec(
        source=source, context_length=context_length, sampling=sampling, stop=stop, system=system
    )


def validate_spec(spec: ModelfileSpec, base_dir: Path | None = None) -> None:
    """Raise ModelfileError for anything Ollama would reject or parse differently than meant."""
    classify_source(spec.source, base_dir)
    if spec.context_length is not None and not 1 <= spec.context_length <= MAX_CONTEXT:
        raise ModelfileError(
            f"context {spec.context_length}: must be between 1 and {MAX_CONTEXT:,} "
            "(Qwen3's native context is 32,768)"
        )
    for name, value in spec.sampling.items():
        if not re.fullmatch(r"[a-z_]+", name):
            raise ModelfileError(f"sampling parameter {name!r}: not an Ollama parameter name")
        if value < 0:
            raise ModelfileError(f"sampling parameter {name}={value}: must not be negative")
    if spec.threads is not None and spec.threads < 1:
        raise ModelfileError(f"threads {spec.threads}: must be at least 1")
    if not spec.stop:
        raise ModelfileError("stop tokens: give at least one (Qwen3 ends a turn with <|im_end|>)")
    for token in spec.stop:
        # A stop value is written in double quotes; Ollama's parser has no escape for them.
        if not token or '"' in token or "\n" in token:
            raise ModelfileError(
                f"stop token {token!r}: must be non-empty, without double quotes or newlines"
            )
    if spec.system is not None and ('"""' in spec.system or spec.system.endswith('"')):
        # SYSTEM is written between triple quotes, which Ollama's parser cannot escape.
        raise ModelfileError('system prompt: must not contain """ or end with a double quote')


def model_parameters(spec: ModelfileSpec) -> dict[str, int | float | list[str]]:
    """The model's PARAMETERs by name, in the Modelfile's order; `stop` holds every stop token."""
    parameters: dict[str, int | float | list[str]] = {}
    if spec.context_length is not None:
        parameters["num_ctx"] = spec.context_length
    if spec.threads is not None:
        parameters["num_thread"] = spec.threads
    parameters.update(spec.sampling)
    parameters["stop"] = list(spec.stop)
    return parameters


def _parameter_lines(name: str, value: int | float | list[str]) -> list[str]:
    if isinstance(value, list):  # one line per value; each is written in double quotes
        return [f'PARAMETER {name} "{item}"' for item in value]
    if isinstance(value, int):
        return [f"PARAMETER {name} {value}"]
    return [f"PARAMETER {name} {value:g}"]


def render_modelfile(spec: ModelfileSpec, base_dir: Path | None = None) -> str:
    validate_spec(spec, base_dir)
    lines = [
        "# Generated by `duet modelfile`; do not edit by hand.",
        f"FROM {spec.source}",
        f'TEMPLATE """{QWEN3_TEMPLATE}"""',
    ]
    if spec.system:
        lines.append(f'SYSTEM """{spec.system}"""')
    for name, value in model_parameters(spec).items():
        lines += _parameter_lines(name, value)
    return "\n".join(lines) + "\n"


def create_model(
    client: ollama.Client, name: str, spec: ModelfileSpec, base_dir: Path | None = None
) -> None:
    """Create (or replace) model `name` in Ollama from `spec`, as `ollama create -f` does with
    the Modelfile of `spec`: a local GGUF file is uploaded as a blob first and named by its
    digest; any other source is a model name Ollama resolves itself.

    Raises ModelfileError for a spec Ollama would reject, and what the client raises when the
    server refuses or cannot be reached (`ollama.ResponseError`, `ConnectionError`, httpx's
    errors)."""
    validate_spec(spec, base_dir)
    source: dict[str, object] = {"from_": spec.source}
    if classify_source(spec.source, base_dir) is SourceKind.LOCAL_PATH:
        path = local_source(spec.source, base_dir)
        if path.is_dir():
            # Ollama takes a directory as one blob per weight and config file.
            raise ModelfileError(
                f"model source {spec.source!r}: a directory of weights is created with "
                "`ollama create NAME -f Modelfile`; create_model takes a .gguf file"
            )
        source = {"files": {path.name: client.create_blob(path)}}
    client.create(
        name,
        **source,
        template=QWEN3_TEMPLATE,
        system=spec.system or None,
        parameters=model_parameters(spec),
    )


# The Modelfiles Compose uses (`OLLAMA_MODELFILE` picks one): the GPU stack's 14B, and the CPU
# demo's 0.6B. Both leave num_ctx to OLLAMA_CONTEXT_LENGTH in docker-compose.yml.
COMMITTED_MODELFILES: dict[str, ModelfileSpec] = {
    "qwen3-14b.Modelfile": spec_for_mode("hf.co/Qwen/Qwen3-14B-GGUF:Q4_K_M", "thinking"),
    "qwen3-0.6b.Modelfile": spec_for_mode("hf.co/Qwen/Qwen3-0.6B-GGUF:Q8_0", "thinking"),
}


def render_committed_modelfiles() -> dict[str, str]:
    """File name → text of every Modelfile committed in `modelfiles/`, rendered from code."""
    return {name: render_modelfile(spec) for name, spec in COMMITTED_MODELFILES.items()}


def write_committed_modelfiles(directory: Path = MODELFILES_DIR) -> list[Path]:
    """Regenerate the committed Modelfiles into `directory`; returns the paths written."""
    if not directory.is_dir():
        raise ModelfileError(
            f"{directory}: no such directory (run from the repository root, where modelfiles/ is)"
        )
    written = []
    for name, text in render_committed_modelfiles().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
