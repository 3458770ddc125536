"""An oversized body does not hold up the answers streaming to everyone else (real Ollama).

Before the body limit, a 200 MB form was read whole before being refused, and every stream on
the server stood still for up to a second meanwhile. Here an answer streams from the real Ollama
through a served Duet while another client pushes a chunked body far past the limit: the server
refuses the body once the limit is passed, having read no more than about that much, and the
answer's events go on arriving while the body is being pushed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from app_server import serve_app
from chat_page import STORY
from duet.bench.sse_client import parse_events
from duet.devstack import TINY_MODEL_NAME, DevStack
from duet.engines.ollama import OllamaEngine
from duet.settings import Settings

pytestmark = pytest.mark.engines

FORM = {
    "engine": "ollama",
    "content": STORY,
    "temperature": "0",
    "top_p": "1",
    "top_k": "0",
    "max_tokens": "200",
    "system_prompt": "",
}
CHUNK = b"content=" + b"x" * (256 * 1024 - 8)
PUSHED_CHUNKS = 800  # 200 MB, far past the 2 MiB default limit


def test_an_oversized_body_is_cut_off_while_an_answer_keeps_streaming(
    dev_stack: DevStack, tmp_path: Path
) -> None:
    ollama = OllamaEngine("ollama", "Ollama", dev_stack.ollama_url, TINY_MODEL_NAME)
    limit = Settings().max_body_bytes
    database = tmp_path / "duet.sqlite3"
    with (
        serve_app({"ollama": ollama}, database) as app,  # type: ignore[dict-item]
        httpx.Client(base_url=app.url, timeout=120) as client,
    ):
        sent = client.post("/chat/send", data=FORM)
        assert sent.status_code == 200, sent.text
        answer_id = re.findall(r'data-stream="/messages/(\d+)/stream"', sent.text)[0]
        pushed: list[int] = []
        upload: dict[str, object] = {}

        def body() -> Iterator[bytes]:
            for _ in range(PUSHED_CHUNKS):
                pushed.append(len(CHUNK))
                yield CHUNK

        def push() -> None:
            upload["started"] = time.monotonic()
            with httpx.Client(base_url=app.url, timeout=60) as pusher:
                try:
                    response = pusher.post(
                        "/chat/send",
                        content=body(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                    )
                    upload["status"] = response.status_code
                except httpx.HTTPError as error:  # the server may close mid-upload
                    upload["error"] = repr(error)
            upload["ended"] = time.monotonic()

        arrivals: list[float] = []
        pusher_thread = threading.Thread(target=push)
        with client.stream("GET", f"/messages/{answer_id}/stream") as stream:
            for event in parse_events(stream.iter_lines()):
                if event.event == "answer":
                    arrivals.append(time.monotonic())
                    if len(arrivals) == 3:
                        pusher_thread.start()
                if event.event == "end":
                    end = event.json()
                    break
        pusher_thread.join(60)
    assert end["status"] == "complete", end
    assert upload.get("status") == 413 or "error" in upload, upload
    # Refused at the limit: the client got no further than a little past it (its socket
    # buffers hold some more), nowhere near the 200 MB it meant to send.
    assert sum(pushed) < limit * 8, f"{sum(pushed):,} bytes pushed before the refusal"
    during = [t for t in arrivals if upload["started"] <= t <= upload["ended"]]  # type: ignore[operator]
    after = [t for t in arrivals if t > upload["ended"]]  # type: ignore[operator]
    assert during or after, "the answer stopped streaming when the body arrived"
