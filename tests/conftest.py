"""Shared fixtures. The real engines start once per test session, on their own ports.

`dev_stack` runs vLLM, Ollama and `transformers serve` on the CPU with the tiny Qwen3 model
(see `duet.devstack`); the README's test command installs them first. Test ports differ from
`duet dev`'s, so a dev stack left running does not collide with the tests. If the engines
cannot start, every engine test fails with the engine's log tail: a missing engine is a failure
here, never a skip.

While developing, `DUET_TEST_REUSE_ENGINES=1 DUET_TEST_VLLM_PORT=8000 DUET_TEST_OLLAMA_PORT=11434
DUET_TEST_TRANSFORMERS_PORT=8001` points the tests at a running `duet dev --no-ui` instead of
starting engines for each session.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from duet.devstack import TINY_MODEL_NAME, DevStack, EngineStartError
from duet.engines import build_engines
from duet.engines.base import Engine
from duet.settings import Settings
from vllm_metrics import VllmMetrics

pytest_plugins = ["browser_fixtures"]


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    log_dir = Path(os.environ.get("DUET_TEST_LOG_DIR", tmp_path_factory.mktemp("engine-logs")))
    stack = DevStack(
        vllm_port=int(os.environ.get("DUET_TEST_VLLM_PORT", "18000")),
        ollama_port=int(os.environ.get("DUET_TEST_OLLAMA_PORT", "21434")),
        transformers_port=int(os.environ.get("DUET_TEST_TRANSFORMERS_PORT", "18001")),
        log_dir=log_dir,
    )
    if os.environ.get("DUET_TEST_REUSE_ENGINES") == "1":
        # For quick iteration against engines already running on these ports (`duet dev
        # --no-ui` uses 8000 and 11434); CI never sets this, so it always starts its own.
        yield stack
        return
    try:
        stack.start()
    except EngineStartError as error:
        pytest.fail(f"the engines did not start:\n{error}", pytrace=False)
    yield stack
    stack.stop()


@pytest.fixture
def vllm_metrics(dev_stack: DevStack) -> Iterator[VllmMetrics]:
    """vLLM's Prometheus books, read over one connection kept open for the test."""
    metrics = VllmMetrics(dev_stack.vllm_url)
    yield metrics
    metrics.close()


@pytest.fixture
def engine_settings(dev_stack: DevStack) -> Settings:
    return Settings(
        vllm_url=dev_stack.vllm_url,
        ollama_url=dev_stack.ollama_url,
        transformers_url=dev_stack.transformers_url,
        vllm_model=TINY_MODEL_NAME,
        ollama_model=TINY_MODEL_NAME,
        transformers_model=TINY_MODEL_NAME,
    )


@pytest_asyncio.fixture(loop_scope="function")
async def engines(engine_settings: Settings) -> AsyncIterator[dict[str, Engine]]:
    """Fresh adapters for each test: an adapter's HTTP client belongs to the event loop that
    opened it. An async test's adapters are closed here, in the test's own loop; an app that a
    test runs in a loop of its own closes them when it stops."""
    built = build_engines(engine_settings)
    yield built
    for engine in built.values():
        with contextlib.suppress(RuntimeError):  # opened in a loop that is gone
            await engine.aclose()
