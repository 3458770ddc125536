""".env.example documents every knob with its real default, and nothing that is not a knob."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from duet.composefile import compose_defaults, parse_env
from duet.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = [ROOT / "docker-compose.yml", *sorted((ROOT / "compose").glob("*.yml"))]


def documented() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return parse_env(text, include_commented=True)


def test_every_setting_is_documented_with_its_default() -> None:
    example = {name: value for name, value in documented().items() if name.startswith("DUET_")}
    settings = {env_name(f.name): f.default for f in fields(Settings)}
    assert set(example) == set(settings), "add or remove DUET_* lines in .env.example"
    for name, default in settings.items():
        assert type(default)(example[name]) == default, f"{name}: .env.example says {example[name]}"


def test_compose_passes_every_setting_to_the_web_ui() -> None:
    # A setting missing from the webui service's environment cannot be set in .env at all.
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    missing = [env_name(f.name) for f in fields(Settings) if f"{env_name(f.name)}:" not in text]
    assert not missing, f"add {missing} to the webui service's environment in docker-compose.yml"


def test_every_compose_knob_is_documented_with_its_default() -> None:
    text = "\n".join(path.read_text(encoding="utf-8") for path in COMPOSE_FILES)
    knobs = compose_defaults(text)
    example = {name: value for name, value in documented().items() if not name.startswith("DUET_")}
    assert set(example) == set(knobs), "add or remove lines in .env.example"
    for name, default in knobs.items():
        assert example[name] == default, (
            f"{name}: Compose says {default!r}, .env.example {example[name]!r}"
        )


def test_compose_defaults_refuses_two_defaults_for_one_knob() -> None:
    with pytest.raises(ValueError, match="two defaults"):
        compose_defaults("${A:-1} ${A:-2}")
    assert compose_defaults("${A:--1} ${B} ${C:-x y}") == {"A": "-1", "B": "", "C": "x y"}


def test_parse_env_reads_values_comments_and_quotes() -> None:
    text = "A=1\n# B=2\nC='three'\n#not a knob\nD=\n"
    assert parse_env(text) == {"A": "1", "C": "three", "D": ""}
    assert parse_env(text, include_commented=True) == {"A": "1", "B": "2", "C": "three", "D": ""}
