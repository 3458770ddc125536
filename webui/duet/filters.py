"""Every Jinja filter the templates use, registered in one place (`register`)."""

from __future__ import annotations

from markupsafe import Markup

from duet.markdown import render_markdown
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


def highlight(snippet: str) -> Markup:
    """Escape a search snippet, then mark the matched words FTS5 delimited."""
    escaped = str(Markup.escape(snippet))
    return Markup(escaped.replace(MATCH_START, "<mark>").replace(MATCH_END, "</mark>"))


FILTERS = {"markdown": markdown, "ms": ms, "ms_fine": ms_fine, "highlight": highlight}


def register(environment: object) -> None:
    """Add every filter to a Jinja environment."""
    environment.filters.update(FILTERS)  # type: ignore[attr-defined]
