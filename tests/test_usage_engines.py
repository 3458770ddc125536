"""A web UI answer's usage row against the real engines: the engine's own token counts, the
answer's timings, no key and no text (the `engines` session fixture from conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from app_server import RunningApp, serve_app
from duet.engines.base import Engine
from duet.store.db import connect

pytestmark = pytest.mark.engines

QUESTION = "Name three colours of the rainbow."
FORM = {
    "content": QUESTION,
    "temperature": "0.6",
    "top_p": "0.95",
    "top_k": "20",
    "max_tokens": "32",
    "system_prompt": "",
}


@pytest.fixture
def app(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[RunningApp]:
    with serve_app(engines, tmp_path / "duet.sqlite3") as running:
        yield running


@pytest.mark.parametrize("engine", ["vllm", "ollama"])
def test_a_web_answer_is_recorded_with_the_engines_counts(
    app: RunningApp, engines: Mapping[str, Engine], engine: str
) -> None:
    if engine not in engines:
        pytest.skip(f"{engine} is not among the session's engines")
    with httpx.Client(base_url=app.url, timeout=120) as client:
        sent = client.post("/chat/send", data={**FORM, "engine": engine})
        assert sent.status_code == 200, sent.text
        answer_id = int(re.findall(r'data-stream="/messages/(\d+)/stream"', sent.text)[0])
        with client.stream("GET", f"/messages/{answer_id}/stream") as stream:
            for _ in stream.iter_lines():
                pass  # to the end of the answer
    db = connect(app.database)
    try:
        message = db.execute("SELECT * FROM messages WHERE id = ?", (answer_id,)).fetchone()
        rows = [dict(row) for row in db.execute("SELECT * FROM api_requests")]
    finally:
        db.close()
    assert message["status"] == "complete"
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "completed" and row["key_id"] is None
    assert (row["engine"], row["model"]) == (message["engine"], message["model"])
    # The engine's own counts (its usage chunk, or Ollama's eval counts), as the answer has them.
    assert row["prompt_tokens"] == message["prompt_tokens"] > 0
    assert row["completion_tokens"] == message["completion_tokens"] > 0
    assert row["ttft_ms"] == message["ttft_ms"] and row["duration_ms"] == message["total_ms"]
    assert QUESTION not in repr(rows) and message["content"] not in repr(rows)
