"""What `/v1/chat/completions` accepts: OpenAI's request body, checked with pydantic.

Fields Duet acts on are declared with their ranges. Asking for what Duet cannot honour (`n`
above 1, `logprobs`, a JSON `response_format`, penalties) is a clear 400 instead of being
silently ignored. Anything else a client sends (`user`, `metadata`, vendor extensions) is
ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from duet.sampling import MAX_TOKENS_LIMIT, TOP_K_LIMIT

MAX_STOP_SEQUENCES = 16
MAX_STOP_CHARS = 200


class Lenient(BaseModel):
    """Unknown fields are ignored; known ones are checked strictly (no "0.5" for 0.5)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class FunctionCall(Lenient):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(Lenient):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Lenient):
    # `developer` is OpenAI's newer name for the system role.
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    # An earlier assistant turn's thinking, under either name vLLM has used.
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def text_parts_only(cls, content: Any) -> Any:
        if isinstance(content, list):
            for part in content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    kind = part.get("type")
                    raise ValueError(f"only text content parts are supported (got {kind!r})")
        return content

    @model_validator(mode="after")
    def has_content(self) -> Message:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        return self

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part["text"] for part in self.content)
        return self.content or ""


class FunctionDefinition(Lenient):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Lenient):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Lenient):
    name: str


class NamedToolChoice(Lenient):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(Lenient):
    include_usage: bool = False


class TemplateKwargs(BaseModel):
    """The chat template's switches, as vLLM takes them; only thinking is Duet's to pass on,
    so any other switch is refused rather than dropped."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    enable_thinking: bool | None = None


class ResponseFormat(Lenient):
    type: Literal["text"]


# Parts of OpenAI's API that Duet does not offer, with the one value of each that passes.
UNSUPPORTED: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "top_logprobs": 0,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logit_bias": {},
}

Tokens = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)


class ChatCompletionRequest(Lenient):
    model: str = Field(min_length=1, max_length=300)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    # -1 (vLLM's word) and 0 both mean no top-k limit.
    top_k: int | None = Field(default=None, ge=-1, le=TOP_K_LIMIT)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    max_tokens: int | None = Tokens
    max_completion_tokens: int | None = Tokens
    stop: str | list[str] | None = None
    chat_template_kwargs: TemplateKwargs | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    @model_validator(mode="before")
    @classmethod
    def nothing_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, neutral in UNSUPPORTED.items():
                value = data.get(name)
                if value is not None and value != neutral:
                    raise ValueError(
                        f"{name} {value!r} is not supported by Duet's /v1 (leave it out, or "
                        f"send {neutral!r})"
                    )
        return data

    @field_validator("stop")
    @classmethod
    def short_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        sequences = [stop] if isinstance(stop, str) else stop or []
        if len(sequences) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not s or len(s) > MAX_STOP_CHARS for s in sequences):
            raise ValueError(f"a stop sequence is 1 to {MAX_STOP_CHARS} characters")
        return stop

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def thinking(self) -> bool:
        """Thinking on unless the request turns it off: Qwen3's chat template thinks by
        default, and so does vLLM serving it."""
        kwargs = self.chat_template_kwargs
        return True if kwargs is None or kwargs.enable_thinking is None else kwargs.enable_thinking

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def problems(error: ValidationError) -> tuple[str, str | None]:
    """A validation error as one sentence for a person, and the first field it is about."""
    said = []
    for problem in error.errors()[:5]:
        where = ".".join(str(part) for part in problem.get("loc", ()))
        text = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
        said.append(f"{where}: {text}" if where else text)
    first = error.errors()[0].get("loc", ()) if error.errors() else ()
    return "Bad request: " + "; ".join(said) + ".", str(first[0]) if first else None
