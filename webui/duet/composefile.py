"""Reading Duet's Compose setup: knob defaults, `.env` files, and where a Compose binary lives.

The defaults of the Compose knobs are written once, as `${NAME:-default}` in docker-compose.yml;
`duet doctor` and the tests read them from there instead of keeping a second copy.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from duet.settings import default_cache

# The Compose version services/dev/install-compose.sh builds by default.
COMPOSE_VERSION = "5.5.1"

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z][A-Z0-9_]*)(?::?-(?P<default>[^}]*))?\}")
_ENV_LINE = re.compile(r"^(?P<commented>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def compose_defaults(compose_text: str) -> dict[str, str]:
    """Variable name → default, from every `${NAME:-default}` in a Compose file.

    A name used with no default maps to "". Raises ValueError if one name has two defaults:
    then the file would size one knob two ways.
    """
    defaults: dict[str, str] = {}
    for match in _INTERPOLATION.finditer(compose_text):
        name, default = match["name"], match["default"] or ""
        if defaults.get(name, default) != default:
            raise ValueError(f"${{{name}}} has two defaults: {defaults[name]!r} and {default!r}")
        defaults[name] = default
    return defaults


def parse_env(text: str, *, include_commented: bool = False) -> dict[str, str]:
    """NAME=value lines of a `.env` file; with include_commented, also `# NAME=value` lines."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line.strip())
        if not match or (match["commented"] and not include_commented):
            continue
        value = match["value"].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[match["name"]] = value
    return values


def compose_binary() -> Path | None:
    """The Compose to run: $DUET_COMPOSE, else the one install-compose.sh built, else on PATH."""
    if configured := os.environ.get("DUET_COMPOSE"):
        return Path(configured)
    built = default_cache() / f"compose-{COMPOSE_VERSION}" / "bin" / "docker-compose"
    if built.is_file():
        return built
    found = shutil.which("docker-compose")
    return Path(found) if found else None
