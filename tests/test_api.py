"""Duet's /v1 without engines: the translation of requests and typed events, the request checks,
the key pages, and the errors a down engine gives (tests/test_api_engines.py has the real
engines; tests/test_authorization.py the key rows of the authorization matrix)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from down_engine import DownEngine, closed_port
from duet.api.keys import create_key
from duet.api.models import canonical, split_model_id
from duet.api.schema import ChatCompletionRequest
from duet.api.translate import Answer, Head, Unsupported, chat_request, first_chunk
from duet.app import create_app
from duet.auth.sessions import COOKIE, token_hash
from duet.engines.events import (
    AnswerDelta,
    Done,
    ReasoningDelta,
    StreamError,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from duet.sampling import DEFAULT_MAX_TOKENS, NON_THINKING, THINKING
from duet.settings import Settings
from duet.store import api_keys, sessions, user_limits, users
from duet.store.user_limits import LimitValues
from duet.store.users import LOCAL_USER_ID
from fastapi import FastAPI
from fastapi.testclient import TestClient

LOCAL = "http://127.0.0.1:8080"
QUESTION = [{"role": "user", "content": "Hi"}]
TWO = {"type": "text", "text": "two"}


def body(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "vllm/m", "messages": QUESTION, **fields})


def test_left_out_sampling_is_qwen3s_recommendation_for_the_mode() -> None:
    for thinking, recommended in ((True, THINKING), (False, NON_THINKING)):
        asked = chat_request(body(chat_template_kwargs={"enable_thinking": thinking}), "m")
        assert asked.thinking is thinking
        assert asked.sampling.temperature == recommended.temperature
        assert asked.sampling.top_p == recommended.top_p
        assert asked.sampling.top_k == recommended.top_k
        assert asked.sampling.max_tokens == DEFAULT_MAX_TOKENS
    assert chat_request(body(), "m").thinking is True, "Qwen3 thinks unless told not to"


def test_the_requests_sampling_reaches_the_engine_request() -> None:
    asked = chat_request(
        body(temperature=0, top_p=0.5, top_k=-1, min_p=0.1, seed=7, max_tokens=9, stop="END"),
        "the-model",
    )
    sampling = asked.sampling
    assert (sampling.temperature, sampling.top_p, sampling.min_p, sampling.seed) == (0, 0.5, 0.1, 7)
    assert sampling.top_k == 0, "-1, vLLM's no limit, is Duet's 0"
    assert sampling.max_tokens == 9 and sampling.stop == ("END",)
    assert asked.model == "the-model"
    newer = chat_request(body(max_tokens=9, max_completion_tokens=5, stop=["a", "b"]), "m")
    assert newer.sampling.max_tokens == 5 and newer.sampling.stop == ("a", "b")


def test_messages_become_the_engines_turns() -> None:
    asked = chat_request(
        body(
            messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "One, "}, TWO]},
                {"role": "assistant", "content": "Three.", "reasoning_content": "Counting."},
                {"role": "user", "content": "Four?"},
            ]
        ),
        "m",
    )  # fmt: skip
    turns = [(m.role, m.content, m.reasoning) for m in asked.messages]
    assert turns == [
        ("system", "Be brief.", None),
        ("user", "One, two", None),
        ("assistant", "Three.", "Counting."),
        ("user", "Four?", None),
    ]


WEATHER = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}


def test_tools_and_their_turns_reach_the_engine_request() -> None:
    asked = chat_request(
        body(
            tools=[WEATHER],
            messages=[
                *QUESTION,
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
            ],
        ),
        "m",
    )
    assert asked.tools == (WEATHER,)
    assistant, result = asked.messages[1:]
    assert (
        assistant.tool_calls == (ToolCall("call_1", "weather", "{}"),) and assistant.content == ""
    )
    assert (result.role, result.tool_call_id, result.content) == ("tool", "call_1", "12 C")
    assert chat_request(body(tools=[WEATHER], tool_choice="none"), "m").tools == ()
    for forced in ("required", {"type": "function", "function": {"name": "weather"}}):
        with pytest.raises(Unsupported):
            chat_request(body(tools=[WEATHER], tool_choice=forced), "m")


def test_a_tool_call_streams_in_pieces_and_is_whole_in_the_completion() -> None:
    head, answer = Head("vllm/m"), Answer()
    pieces = [
        ToolCallDelta(0, "call_a", "weather", "", 1.0, 0),
        ToolCallDelta(0, None, None, '{"city": ', 1.1, 1),
        ToolCallDelta(0, None, None, '"Paris"}', 1.2, 2),
        ToolCallDelta(1, None, "time", "{}", 1.3, 3),  # an engine that gives no id
        Done("stop", 1.4),
    ]
    data = sse_data(b"".join(answer.stream_bytes(head, e, False) for e in pieces))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in data[:4]]
    assert calls[0] == {
        "index": 0, "id": "call_a", "type": "function",
        "function": {"name": "weather", "arguments": ""},
    }  # fmt: skip
    assert calls[1] == {"index": 0, "function": {"arguments": '{"city": '}}
    assert calls[3]["id"].startswith("call_") and calls[3]["function"]["name"] == "time"
    assert data[4]["choices"][0]["finish_reason"] == "tool_calls"
    message = answer.completion(head)["choices"][0]["message"]
    assert message["content"] is None
    whole = [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]
    ]
    assert whole == [("call_a", "weather", '{"city": "Paris"}'), (calls[3]["id"], "time", "{}")]
    assert answer.completion(head)["choices"][0]["finish_reason"] == "tool_calls"


def sse_data(stream: bytes) -> list[Any]:
    return [
        line.removeprefix("data: ") if line == "data: [DONE]" else json.loads(line[6:])
        for line in stream.decode().split("\n\n")
        if line
    ]


def test_events_become_openai_chunks() -> None:
    head, answer = Head("vllm/m"), Answer()
    events = [
        ReasoningDelta("Hmm.", 1.0, 0),
        AnswerDelta("Paris", 1.1, 1),
        AnswerDelta("", 1.1, 1),
        Usage(prompt_tokens=5, completion_tokens=3, at=1.2),
        Done("length", 1.3),
    ]
    stream = first_chunk(head) + b"".join(answer.stream_bytes(head, e, True) for e in events)
    data = sse_data(stream)
    assert data[-1] == "[DONE]"
    chunks = data[:-1]
    assert {(c["id"], c["object"], c["model"]) for c in chunks} == {
        (head.id, "chat.completion.chunk", "vllm/m")
    }
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning": "Hmm.", "reasoning_content": "Hmm."},
        {"content": "Paris"},
        {},  # the finish_reason's chunk
        None,  # include_usage: the usage, with no choices
    ]
    assert chunks[3]["choices"][0]["finish_reason"] == "length"
    assert chunks[4]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    whole = answer.completion(head)
    assert whole["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Paris",
        "reasoning": "Hmm.",
        "reasoning_content": "Hmm.",
    }
    assert whole["choices"][0]["finish_reason"] == "length"
    assert whole["usage"]["total_tokens"] == 8


def test_without_include_usage_a_stream_ends_at_its_finish_and_an_error_ends_it() -> None:
    head = Head("ollama/m")
    ending = Answer().stream_bytes(head, Done("unexpected word", 1.0), False)
    finish = sse_data(ending)
    assert finish[0]["choices"][0]["finish_reason"] == "stop" and finish[1:] == ["[DONE]"]
    failed = sse_data(Answer().stream_bytes(head, StreamError("the engine broke", 1.0), True))
    assert failed[0]["error"]["message"] == "the engine broke" and failed[1:] == ["[DONE]"]


def test_model_names_say_their_engine() -> None:
    engines: Any = {"vllm": None, "ollama": None, "ollama-openai": None}
    assert split_model_id("vllm/Qwen/Qwen3-14B", engines) == ("vllm", "Qwen/Qwen3-14B")
    assert split_model_id("ollama-openai/qwen3:8b", engines) == ("ollama-openai", "qwen3:8b")
    for name in ("qwen3", "sglang/qwen3", "vllm/", "/qwen3"):
        assert split_model_id(name, engines) is None, name
    assert canonical("ollama/qwen3") == "ollama/qwen3:latest"
    assert canonical("ollama/qwen3:8b") == "ollama/qwen3:8b"
    assert canonical("vllm/qwen3") == "vllm/qwen3"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[FastAPI, TestClient, str]]:
    """A local-mode app whose engines are down, and a key of the local user's."""
    port = closed_port()
    engines = {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    made = create_app(Settings(), engines=engines, database=tmp_path / "duet.sqlite3")  # type: ignore[arg-type]
    with TestClient(made, base_url=LOCAL) as client:
        token = create_key(made.state.db, LOCAL_USER_ID, "k", None, None, datetime.now(UTC)).token
        yield made, client, token


def ask(client: TestClient, token: str, payload: Any) -> Any:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        "/v1/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        (b"{not json", "Invalid JSON"),
        ({"messages": QUESTION}, "model: Field required"),
        ({"model": "vllm/m", "messages": []}, "messages: List should have at least 1 item"),
        ({"model": "vllm/m", "messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"model": "vllm/m", "messages": [{"role": "user"}]}, "a user message needs content"),
        ({"model": "vllm/m", "messages": QUESTION, "temperature": 3}, "temperature"),
        ({"model": "vllm/m", "messages": QUESTION, "temperature": "0.5"}, "temperature"),
        ({"model": "vllm/m", "messages": QUESTION, "top_p": 0}, "top_p"),
        ({"model": "vllm/m", "messages": QUESTION, "max_tokens": 0}, "max_tokens"),
        ({"model": "vllm/m", "messages": QUESTION, "max_tokens": 10**6}, "max_tokens"),
        ({"model": "vllm/m", "messages": QUESTION, "stream": "yes"}, "stream"),
        ({"model": "vllm/m", "messages": QUESTION, "n": 2}, "n 2 is not supported"),
        ({"model": "vllm/m", "messages": QUESTION, "logprobs": True}, "logprobs"),
        ({"model": "vllm/m", "messages": QUESTION, "presence_penalty": 1}, "presence_penalty"),
        ({"model": "vllm/m", "messages": QUESTION, "stop": ["x"] * 17}, "stop sequences"),
        (
            {"model": "vllm/m", "messages": QUESTION, "response_format": {"type": "json_object"}},
            "response_format",
        ),
        (
            {"model": "vllm/m", "messages": QUESTION, "chat_template_kwargs": {"x": 1}},
            "chat_template_kwargs.x: Extra inputs are not permitted",
        ),
        (
            {
                "model": "vllm/m",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            "only text content parts",
        ),
        (
            {"model": "vllm/m", "messages": [{"role": "tool", "content": "12 C"}]},
            "tool_call_id",
        ),
    ],
)
def test_a_bad_request_is_a_400_that_says_what_is_wrong(
    app: tuple[FastAPI, TestClient, str], payload: Any, said: str
) -> None:
    _, client, token = app
    got = ask(client, token, payload)
    assert got.status_code == 400, got.text
    error = got.json()["error"]
    assert error["type"] == "invalid_request_error" and said in error["message"], error


def test_a_down_engine_is_a_503_with_retry_after(app: tuple[FastAPI, TestClient, str]) -> None:
    made, client, token = app
    for stream in (False, True):
        got = ask(client, token, {"model": "vllm/m", "messages": QUESTION, "stream": stream})
        assert got.status_code == 503, got.text
        assert got.headers["retry-after"] == "5"
        error = got.json()["error"]
        assert error["code"] == "engine_unavailable" and "vLLM is down" in error["message"]
    metrics = client.get("/metrics").text
    assert 'duet_api_requests_total{engine="vllm",outcome="failed"} 2.0' in metrics
    rows = made.state.db.execute("SELECT status, key_id FROM api_requests").fetchall()
    assert [tuple(row) for row in rows] == [("failed", 1), ("failed", 1)], "usage kept"


def test_over_a_limit_is_a_429_with_retry_after(app: tuple[FastAPI, TestClient, str]) -> None:
    """/v1 asks duet.limits before the engine (tests/test_limits.py tests the limits
    themselves): a refusal is OpenAI's rate-limit error, and it never reaches the engine."""
    made, client, token = app
    user_limits.set_override(made.state.db, LOCAL_USER_ID, LimitValues(0, None, None))
    engine = made.state.engines["vllm"].inner
    got = ask(client, token, {"model": "vllm/m", "messages": QUESTION, "stream": True})
    assert got.status_code == 429, got.text
    assert got.json()["error"]["type"] == "rate_limit_error"
    assert got.json()["error"]["code"] == "rate_limit_exceeded"
    assert got.headers["retry-after"] == "5" and engine.requests == 0
    metrics = client.get("/metrics").text
    assert 'duet_api_requests_total{engine="vllm",outcome="refused"} 1.0' in metrics
    status = made.state.db.execute("SELECT status FROM api_requests").fetchall()
    assert [row[0] for row in status] == ["refused"]


def test_unknown_and_unlisted_models(app: tuple[FastAPI, TestClient, str]) -> None:
    _, client, token = app
    got = ask(client, token, {"model": "qwen3", "messages": QUESTION})
    assert got.status_code == 404 and got.json()["error"]["code"] == "model_not_found"
    assert "vllm/<model>" in got.json()["error"]["message"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/models", headers=headers).json() == {"object": "list", "data": []}
    assert client.get("/v1/models/vllm/m", headers=headers).status_code == 404


def test_a_key_is_shown_once_kept_hashed_and_revoked_by_its_owner(
    app: tuple[FastAPI, TestClient, str],
) -> None:
    made, client, _ = app
    db: sqlite3.Connection = made.state.db
    page = client.post("/account/keys", data={"name": "editor", "expires_days": "30"})
    assert page.status_code == 200, page.text
    token = re.search(r'<code class="secret" id="new-key">(duet-[\w-]+)</code>', page.text)
    assert token is not None, "the new key is on the page"
    listing = client.get("/account/keys").text
    assert token[1] not in listing and token[1][:12] in listing, "listed by its prefix only"
    stored = api_keys.find_key(db, token_hash(token[1]))
    assert stored is not None and stored.name == "editor" and stored.expires_at is not None
    assert (
        db.execute("SELECT count(*) FROM api_keys WHERE key_hash = ?", (token[1],)).fetchone()[0]
        == 0
    )
    headers = {"Authorization": f"Bearer {token[1]}"}
    assert client.get("/v1/models", headers=headers).status_code == 200
    assert api_keys.get_key(db, LOCAL_USER_ID, stored.id).last_used_at is not None  # type: ignore[union-attr]
    revoked = client.post(f"/account/keys/{stored.id}/revoke")
    assert revoked.status_code == 200 and "revoked" in revoked.text
    assert client.get("/v1/models", headers=headers).status_code == 401
    assert client.post(f"/account/keys/{stored.id}/revoke").status_code == 404
    for bad in (
        {"name": ""},
        {"name": "x", "expires_days": "0"},
        {"name": "x", "models": "nope/m"},
    ):
        assert client.post("/account/keys", data=bad).status_code == 422, bad


def test_admins_see_every_keys_metadata_and_revoke_any(tmp_path: Path) -> None:
    made = create_app(Settings(mode="accounts"), engines={}, database=tmp_path / "a.db")
    with TestClient(made, base_url=LOCAL) as client:
        db: sqlite3.Connection = made.state.db
        alice = users.create_user(db, "alice", "not-checked", "user")
        ada = users.create_user(db, "ada", "not-checked", "admin")
        token = create_key(db, alice.id, "alice laptop", None, None, datetime.now(UTC)).token
        cookies = {}
        for user in (alice, ada):
            session = "token-" + user.name
            sessions.create_session(db, user.id, token_hash(session), "9999-01-01", "t", "")
            cookies[user.name] = {COOKIE: session}
        client.cookies.clear()
        listed = client.get("/admin/api-keys", cookies=cookies["ada"])
        assert listed.status_code == 200
        assert "alice laptop" in listed.text and token[:12] in listed.text
        assert token not in listed.text
        assert client.get("/admin/api-keys", cookies=cookies["alice"]).status_code == 403
        # Alice's own page shows her key; an admin's own page does not.
        assert "alice laptop" in client.get("/account/keys", cookies=cookies["alice"]).text
        assert "alice laptop" not in client.get("/account/keys", cookies=cookies["ada"]).text
        key_id = api_keys.list_keys(db, alice.id)[0].id
        assert (
            client.post(f"/account/keys/{key_id}/revoke", cookies=cookies["ada"]).status_code == 404
        )
        revoked = client.post(f"/admin/api-keys/{key_id}/revoke", cookies=cookies["ada"])
        assert revoked.status_code == 200 and "revoked" in revoked.text
        assert (
            client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code
            == 401
        )


def test_api_clients_pass_the_cross_site_check_and_other_sites_do_not(
    app: tuple[FastAPI, TestClient, str],
) -> None:
    """/v1 has no exemption from duet.security's cross-site check, and needs none: a script or
    an SDK sends neither Origin nor Sec-Fetch-Site and passes it; a request another site's
    page makes a browser send is refused before any key is looked at (and it could not carry
    the key anyway)."""
    _, client, token = app
    payload = {"model": "vllm/m", "messages": QUESTION}
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/chat/completions", json=payload, headers=bearer).status_code == 503
    for browser in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        refused = client.post("/v1/chat/completions", json=payload, headers={**bearer, **browser})
        assert refused.status_code == 403 and "another site" in refused.text, browser


def answer_of(text: str, reasoning: str = "") -> Answer:
    answer = Answer()
    for event in (
        ReasoningDelta(reasoning, 1.0, 0),
        AnswerDelta(text, 1.1, 1),
        Usage(prompt_tokens=9, completion_tokens=4, at=1.2),
        Done("stop", 1.3),
    ):
        answer.fold(event)
    return answer


def test_a_key_that_keeps_history_keeps_one_conversation_per_chat(tmp_path: Path) -> None:
    """What duet.api.history keeps of a request and its answer (the engines test asks through
    /v1): a first request makes a conversation; the tool's next request, which sends it all
    again plus a question, continues it; tool turns and failed answers are not kept."""
    from duet.api.history import Kept
    from duet.store import conversations, messages, open_database

    db = open_database(tmp_path / "duet.sqlite3")
    system = {"role": "system", "content": "Be brief."}
    first = body(messages=[system, {"role": "user", "content": "Capital of France?"}])
    kept = Kept(LOCAL_USER_ID, first, "vllm", "m", chat_request(first, "m").sampling)
    made = kept.keep(db, "completed", answer_of("Paris.", "Easy."), 12.5, 40.0)
    assert made is not None
    later = body(
        messages=[
            system,
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris.", "reasoning": "Easy."},
            {"role": "user", "content": "And of Italy?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{}"},
        ]
    )
    again = Kept(LOCAL_USER_ID, later, "vllm", "m", chat_request(later, "m").sampling)
    assert again.keep(db, "stopped", answer_of("Rome."), None, 10.0) == made
    assert again.keep(db, "failed", answer_of(""), None, 1.0) is None
    conversation = conversations.get_conversation(db, LOCAL_USER_ID, made)
    assert conversation is not None and conversation.system_prompt == "Be brief."
    assert conversation.title == "Capital of France?"
    stored = messages.list_messages(db, made)
    assert [(m.role, m.content, m.status) for m in stored] == [
        ("user", "Capital of France?", "complete"),
        ("assistant", "Paris.", "complete"),
        ("user", "And of Italy?", "complete"),
        ("assistant", "Rome.", "stopped"),
    ]
    answer = stored[1]
    assert (answer.reasoning, answer.engine, answer.prompt_tokens, answer.ttft_ms) == (
        "Easy.", "vllm", 9, 12.5
    )  # fmt: skip
    assert answer.parameters["top_k"] == 20 and answer.parameters["thinking"] is True
    assert len(conversations.list_conversations(db, LOCAL_USER_ID)) == 1


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    app: tuple[FastAPI, TestClient, str],
) -> None:
    made, client, token = app
    limit = made.state.settings.max_body_bytes
    payload = {"model": "vllm/m", "messages": [{"role": "user", "content": "x" * (limit + 1)}]}
    got = ask(client, token, payload)
    assert got.status_code == 413 and "DUET_MAX_BODY_BYTES" in got.text
