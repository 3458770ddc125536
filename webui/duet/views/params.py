"""One way every route reads the numbers it is given: ids, pages, counts, event ids.

A number in a path, query, form or header is ASCII digits within bounds, or the request gets a
4xx that says what was wrong. (Python's `int()` and `str.isdigit()` also take digits of other
scripts and superscripts, and SQLite refuses integers past 2**63 - 1 with an error of its own.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BeforeValidator

from duet.views.errors import UserError

# SQLite's largest integer: every row id is at most this.
MAX_ID = 2**63 - 1
# Pages of a listing: far more than any listing has, small enough that the offset stays an int.
MAX_PAGE = 1_000_000

ASCII_DIGITS = re.compile(r"[0-9]{1,19}")


def written_in_ascii_digits(value: object) -> object:
    """Checked before pydantic reads a path or query value as an int: pydantic alone would also
    take `1_0` (as 10), ` 1`, `+1` and `1.0` (as 1)."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]+", value):
        raise ValueError("expected a whole number in the digits 0-9")
    return value


AsciiDigits = BeforeValidator(written_in_ascii_digits)

# Path parameters of routes: `conversation_id: ConversationId` and so on.
ConversationId = Annotated[
    int, AsciiDigits, Path(ge=1, le=MAX_ID, description="a conversation's id")
]
MessageId = Annotated[int, AsciiDigits, Path(ge=1, le=MAX_ID, description="a message's id")]
RunId = Annotated[int, AsciiDigits, Path(ge=1, le=MAX_ID, description="a compare run's id")]
AnswerId = Annotated[int, AsciiDigits, Path(ge=1, le=MAX_ID, description="a compare answer's id")]
ShareId = Annotated[int, AsciiDigits, Path(ge=1, le=MAX_ID, description="a share's id")]
PageNumber = Annotated[
    int, AsciiDigits, Query(ge=1, le=MAX_PAGE, description="the page of a listing")
]


def parse_id(raw: str, what: str) -> int:
    """An id written by a client: ASCII digits, 1 to MAX_ID; else a 422 naming `what`."""
    text = raw.strip()
    if not ASCII_DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_ID:
        raise UserError(422, f"Bad {what} {raw[:40]!r}: expected a number from 1 to {MAX_ID}.")
    return int(text)


def parse_optional_id(form: Mapping[str, Any], name: str, what: str) -> int | None:
    """A form field holding an id, or None when it is absent or empty."""
    value = form.get(name)
    raw = value.strip() if isinstance(value, str) else ""
    return parse_id(raw, what) if raw else None


def parse_last_event_id(raw: str | None) -> int:
    """The `Last-Event-ID` a reconnecting EventSource sends: the sequence number of the last
    event it got, so the stream resumes after it. -1 (from the start) when there is none."""
    if raw is None or raw.strip() == "":
        return -1
    text = raw.strip()
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise UserError(400, f"Bad Last-Event-ID {raw[:40]!r}: expected an event number.")
    return int(text)
