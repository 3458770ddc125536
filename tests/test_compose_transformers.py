"""The `transformers` compose profile: `transformers serve` as a third engine, off by default.

Checked with `compose config` only (tests/compose_config.py): its image, PyPI's torch with
its CUDA libraries, is several GB and is not built in CI; the same server runs in the dev stack
on the CPU (tests/test_transformers_engine.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from compose_config import ROOT, find_compose, resolved
from duet.versions import TRANSFORMERS_VERSION

PROFILE = {"COMPOSE_PROFILES": "transformers", "TRANSFORMERS_URL": "http://transformers:8000"}


@pytest.fixture(scope="module")
def compose() -> Path:
    return find_compose()


def test_without_the_profile_there_is_no_service_and_no_route(
    compose: Path, tmp_path: Path
) -> None:
    services = resolved(compose, [], tmp_path)["services"]
    assert "transformers" not in services
    assert services["webui"]["environment"]["DUET_TRANSFORMERS_URL"] == ""


def test_the_profile_serves_the_configured_model_to_the_web_ui(
    compose: Path, tmp_path: Path
) -> None:
    services = resolved(compose, [], tmp_path, **PROFILE)["services"]
    service = services["transformers"]
    assert service["command"] == [
        "Qwen/Qwen3-14B", "--quantization=bnb-4bit", "--host=0.0.0.0", "--port=8000"
    ]  # fmt: skip
    environment = services["webui"]["environment"]
    assert environment["DUET_TRANSFORMERS_URL"] == "http://transformers:8000"
    # The server answers only to the name it loaded: the web UI asks for that one.
    assert environment["DUET_TRANSFORMERS_MODEL"] == service["command"][0]
    # On the engines' network only, no port published, healthy once /health answers.
    assert set(service["networks"]) == {"engines"} and not service.get("ports")
    assert service["healthcheck"]["test"][:2] == ["CMD", "python3"]
    assert "/health" in service["healthcheck"]["test"][-1]
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert (device["driver"], device["capabilities"]) == ("nvidia", ["gpu"])
    assert {v["target"] for v in service["volumes"]} == {"/root/.cache/huggingface"}
    # The image is built here, from the pinned release the dev stack runs.
    assert service["build"]["args"]["TRANSFORMERS_VERSION"] == TRANSFORMERS_VERSION
    assert service["image"] == f"duet-transformers:{TRANSFORMERS_VERSION}"
    dockerfile = (ROOT / "services/transformers/Dockerfile").read_text(encoding="utf-8")
    assert f"ARG TRANSFORMERS_VERSION={TRANSFORMERS_VERSION}" in dockerfile
    assert '"transformers[serving]==${TRANSFORMERS_VERSION}"' in dockerfile


def test_the_profiles_knobs_reach_the_service(compose: Path, tmp_path: Path) -> None:
    knobs = {"TRANSFORMERS_MODEL": "Qwen/Qwen3-8B", "TRANSFORMERS_QUANTIZATION": "bnb-8bit"}
    services = resolved(compose, [], tmp_path, **PROFILE, **knobs)["services"]
    assert services["transformers"]["command"][:2] == ["Qwen/Qwen3-8B", "--quantization=bnb-8bit"]
    assert services["webui"]["environment"]["DUET_TRANSFORMERS_MODEL"] == "Qwen/Qwen3-8B"
