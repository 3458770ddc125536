"""Responses the browser saves as a file, named so that any title survives the trip.

A header carries Latin-1 at most, so a title in Cyrillic or CJK cannot go in `filename="..."`
as it is (Starlette fails to encode it: a 500). RFC 6266 gives the name twice: `filename*` in
UTF-8, percent-encoded as RFC 8187 (formerly 5987) says, which every current browser reads, and
an ASCII `filename` for any client that does not.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from starlette.responses import Response


def download(body: str | bytes, media_type: str, filename: str) -> Response:
    """`body` as an attachment the browser saves as `filename`."""
    return Response(
        body, media_type=media_type, headers={"Content-Disposition": content_disposition(filename)}
    )


def content_disposition(filename: str) -> str:
    fallback = ascii_filename(filename)
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def ascii_filename(filename: str) -> str:
    """The name with accents taken off its letters, other non-ASCII letters dropped, and
    anything but letters, digits, dots, dashes and underscores made a dash (no quote or
    backslash can end the quoted string early)."""
    plain = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    plain = re.sub(r"[^A-Za-z0-9._-]+", "-", plain)
    plain = re.sub(r"-{2,}", "-", plain)
    plain = re.sub(r"-+(?=\.)|(?<=\.)-+", "", plain).strip("-")
    return plain if plain.strip(".") else "download"
