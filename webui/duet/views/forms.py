"""Reading and checking what the composer sends, before anything is stored.

Every check has a message a person can act on; a failure raises `UserError(422, ...)`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import FormData as StarletteFormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from duet.engines.base import Engine, Sampling
from duet.engines.events import EngineName
from duet.sampling import MAX_TOKENS_LIMIT, TOP_K_LIMIT
from duet.settings import Settings
from duet.turns import TurnOptions
from duet.views.errors import UserError

FormData = Mapping[str, Any]

URLENCODED = "application/x-www-form-urlencoded"
# A number as a person types one: digits, an optional fraction and exponent, ASCII only.
PLAIN_NUMBER = re.compile(r"-?([0-9]{1,12}(\.[0-9]{0,12})?|\.[0-9]{1,12})([eE][-+]?[0-9]{1,3})?")


async def read_form(request: Request) -> StarletteFormData:
    """The submitted form. htmx and the browser send `application/x-www-form-urlencoded`,
    which the standard library parses in a fifth of the time Starlette's multipart-capable
    parser takes (≈ 20 µs against ≈ 80 µs here): this is on the way to every engine request.
    Anything else (multipart) goes to Starlette's parser.

    A form that is not UTF-8, raw or percent-escaped, is refused: decoded leniently, its
    bytes would be stored as U+FFFD in place of what was typed."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != URLENCODED:
        try:
            return await request.form()
        except HTTPException as error:  # a multipart body Starlette cannot parse
            raise UserError(400, f"The form could not be read: {error.detail}") from None
    try:
        body = (await request.body()).decode("utf-8")
        fields = parse_qsl(body, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise UserError(
            422, "The form is not UTF-8: send it as UTF-8 (what browsers send by default)."
        ) from None
    return StarletteFormData(fields)


def text_field(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def parse_content(form: FormData, settings: Settings) -> str:
    content = text_field(form, "content")
    if not content.strip():
        raise UserError(422, "The message is empty: type something to send.")
    if len(content) > settings.max_message_chars:
        raise UserError(
            422,
            f"The message is {len(content):,} characters long; the limit is "
            f"{settings.max_message_chars:,} (DUET_MAX_MESSAGE_CHARS).",
        )
    return content


def parse_checkbox(form: FormData, name: str) -> bool:
    # An unchecked box is not sent at all; a checked one sends its value ("on" by default).
    return text_field(form, name).lower() in {"on", "true", "1", "yes"}


def parse_number(form: FormData, name: str, label: str, low: float, high: float) -> float:
    raw = text_field(form, name).strip()
    # Plain decimal notation: float() would also take other scripts' digits, `_`, "nan", "inf".
    if not PLAIN_NUMBER.fullmatch(raw):
        raise UserError(422, f"{label} must be a number (got {raw[:40]!r}).")
    value = float(raw)
    if not math.isfinite(value) or not low <= value <= high:
        raise UserError(422, f"{label} must be between {low:g} and {high:g} (got {raw}).")
    return value


def parse_integer(form: FormData, name: str, label: str, low: int, high: int) -> int:
    raw = text_field(form, name).strip()
    # ASCII digits only: int() would also take other scripts' digits and `_` separators.
    if not re.fullmatch(r"-?[0-9]{1,12}", raw):
        raise UserError(422, f"{label} must be a whole number (got {raw[:40]!r}).")
    value = int(raw)
    if not low <= value <= high:
        raise UserError(422, f"{label} must be between {low:,} and {high:,} (got {value:,}).")
    return value


def parse_sampling(form: FormData) -> Sampling:
    temperature = parse_number(form, "temperature", "Temperature", 0.0, 2.0)
    top_p = parse_number(form, "top_p", "Top-p", 0.0, 1.0)
    if top_p == 0.0:
        raise UserError(422, "Top-p must be greater than 0 and at most 1 (got 0).")
    return Sampling(
        temperature=temperature,
        top_p=top_p,
        # 0 means no top-k limit.
        top_k=parse_integer(form, "top_k", "Top-k", 0, TOP_K_LIMIT),
        max_tokens=parse_integer(form, "max_tokens", "Max tokens", 1, MAX_TOKENS_LIMIT),
    )


def parse_engine(form: FormData, engines: Mapping[EngineName, Engine]) -> EngineName:
    name = text_field(form, "engine")
    for known in engines:
        if name == known:
            return known
    choices = ", ".join(engines) or "none are configured"
    raise UserError(422, f"Unknown engine {name!r}; choose one of: {choices}.")


def parse_options(
    form: FormData, settings: Settings, engines: Mapping[EngineName, Engine]
) -> TurnOptions:
    system_prompt = text_field(form, "system_prompt")
    if len(system_prompt) > settings.max_message_chars:
        raise UserError(
            422,
            f"The system prompt is {len(system_prompt):,} characters long; the limit is "
            f"{settings.max_message_chars:,}.",
        )
    return TurnOptions(
        engine=parse_engine(form, engines),
        thinking=parse_checkbox(form, "thinking"),
        sampling=parse_sampling(form),
        system_prompt=system_prompt,
    )
