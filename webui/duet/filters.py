"""Every Jinja filter the templates use, registered in one place (`register`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from duet.markdown import render_markdown
from duet.metrics.stream import (
    BURST_GAP_S,
    MIN_GAPS_FOR_VERDICT,
    TtftSplit,
    decode_speed,
    ttft_split,
)
from duet.store.conversations import MATCH_END, MATCH_START


def markdown(text: str) -> Markup:
    """Markdown to safe HTML (HTML in the source is shown as text, see `duet.markdown`)."""
    return Markup(render_markdown(text))


def ms(value: float | None) -> str:
    """A duration for people: whole milliseconds, or seconds from one second up."""
    if value is None:
        return "n/a"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def ms_fine(value: float | None) -> str:
    """Milliseconds for the metrics panels: sub-ms gaps keep their decimals (a relay's added
    delay is often well under 1 ms), long waits read in seconds."""
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value / 1000:.2f} s"
    if abs(value) >= 100:
        return f"{value:.0f} ms"
    if abs(value) >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


DECODE_HINT = "decode speed: tokens after the first / time after the first token"
ARRIVED_TOGETHER_HINT = (
    f"the tokens after the first arrived less than {BURST_GAP_S * 1000:g} ms apart: "
    "a rate over that span would measure the burst, not the engine"
)


def decode_rate(
    output_tokens: int | None,
    ttft_ms: float | None,
    e2e_ms: float | None,
    labelled: bool = False,
) -> Markup:
    """The decode speed for people, with its definition on hover: "21.5 tok/s" ("decode 21.5
    tok/s" when `labelled`, for a line of numbers), "chunks arrived together" for a burst (not
    a speed), "n/a" without the numbers. The definition is `metrics.stream.decode_speed`; every
    page shows this one."""
    speed = decode_speed(
        output_tokens,
        None if ttft_ms is None else ttft_ms / 1000,
        None if e2e_ms is None else e2e_ms / 1000,
    )
    if speed is None:
        text, hint = "n/a", DECODE_HINT + " (needs the engine's token count, 2 or more)"
    elif speed.tokens_per_s is None:
        text, hint = "chunks arrived together", ARRIVED_TOGETHER_HINT
    else:
        text, hint = f"{speed.tokens_per_s:.1f} tok/s", DECODE_HINT
        if labelled:
            text = "decode " + text
    return Markup('<span class="decode-rate" title="{}">{}</span>').format(hint, text)


def split_ttft(ttft_ms: float | None, engine_timings: dict[str, float]) -> TtftSplit | None:
    """`metrics.stream.ttft_split` for a template, from a TTFT in ms."""
    return ttft_split(None if ttft_ms is None else ttft_ms / 1000, engine_timings or {})


def age_groups(items: Sequence[Any], now: datetime | None = None) -> list[tuple[str, list[Any]]]:
    """Items with an ISO `updated_at`, latest first, in the sidebar's groups by age (UTC days):
    Today (always first, maybe empty: a new conversation goes there), Yesterday, Previous 7
    days, Previous 30 days, then one group per month."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    groups: dict[str, list[Any]] = {"Today": []}
    for item in items:
        try:
            day = datetime.fromisoformat(item.updated_at).astimezone(UTC).date()
        except ValueError:
            day = today
        age = (today - day).days
        if age <= 0:
            label = "Today"
        elif age == 1:
            label = "Yesterday"
        elif age < 7:
            label = "Previous 7 days"
        elif age < 30:
            label = "Previous 30 days"
        else:
            label = day.strftime("%B %Y")
        groups.setdefault(label, []).append(item)
    return list(groups.items())


def when(stamp: str) -> str:
    """A stored ISO 8601 time (UTC) for people: "2026-12-01 11:54 UTC"."""
    try:
        moment = datetime.fromisoformat(stamp).astimezone(UTC)
    except ValueError:
        return stamp
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def days(value: float) -> str:
    """A number of days for people: "30 days", "1 day", "12 hours" under a day."""
    if value < 1:
        hours = round(value * 24)
        return f"{hours} hour{'' if hours == 1 else 's'}"
    return f"{value:g} day{'' if value == 1 else 's'}"


def highlight(snippet: str) -> Markup:
    """Escape a search snippet, then mark the matched words FTS5 delimited."""
    escaped = str(Markup.escape(snippet))
    return Markup(escaped.replace(MATCH_START, "<mark>").replace(MATCH_END, "</mark>"))


FILTERS = {
    "markdown": markdown,
    "ms": ms,
    "ms_fine": ms_fine,
    "highlight": highlight,
    "decode_rate": decode_rate,
    "when": when,
    "days": days,
    "split_ttft": split_ttft,
    "age_groups": age_groups,
}


# The constants the templates' wording depends on.
GLOBALS = {
    "MIN_CHUNKS_FOR_VERDICT": MIN_GAPS_FOR_VERDICT + 1,
    # A time to first token from this long (ms) says where it went under the answer.
    "LONG_TTFT_MS": 1000,
}


def register(environment: object) -> None:
    """Add every filter (and the constants in GLOBALS) to a Jinja environment."""
    environment.filters.update(FILTERS)  # type: ignore[attr-defined]
    environment.globals.update(GLOBALS)  # type: ignore[attr-defined]
