"""The web app with real parts (store on a temporary file, engines that are down): validation,
engine-down handling, history and export, the event-stream contract."""

from __future__ import annotations

import gc
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.bench.sse_client import parse_events
from duet.settings import Settings
from duet.store import conversations, messages, open_database, runs
from duet.store.messages import AnswerRecord
from duet.store.users import LOCAL_USER_ID
from duet.views import chat as chat_views
from fastapi.testclient import TestClient

# Where a local Duet is reached: a loopback name, which the host check lets through.
LOCAL = "http://127.0.0.1:8080"

HX = {"HX-Request": "true"}

VALID_FORM = {
    "content": "Hello there",
    "engine": "vllm",
    "thinking": "on",
    "temperature": "0.6",
    "top_p": "0.95",
    "top_k": "20",
    "max_tokens": "64",
    "system_prompt": "",
}


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "duet.sqlite3"


@pytest.fixture
def down_engines() -> dict[str, DownEngine]:
    port = closed_port()
    return {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }


@pytest.fixture
def client(database: Path, down_engines: dict[str, DownEngine]) -> Iterator[TestClient]:
    app = create_app(Settings(max_message_chars=100), engines=down_engines, database=database)
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def db(client: TestClient) -> sqlite3.Connection:
    return client.app.state.db  # type: ignore[attr-defined, no-any-return]


def read_events(client: TestClient, url: str) -> list[tuple[str, dict, str | None]]:
    """Read an event stream to its end: (event name, data, id) per event."""
    with client.stream("GET", url) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return [(e.event, e.json(), e.id) for e in parse_events(response.iter_lines())]


def count(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_new_chat_page_offers_every_engine(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert '<option value="vllm"' in page.text
    assert '<option value="ollama"' in page.text
    assert "vendor/htmx-2.0.11.min.js" in page.text
    # Thinking is on by default with Qwen3's recommended thinking-mode sampling.
    assert 'name="temperature" value="0.6"' in page.text
    assert 'name="top_p" value="0.95"' in page.text


def test_static_files_are_served(client: TestClient) -> None:
    assert client.get("/static/vendor/htmx-2.0.11.min.js").status_code == 200
    assert client.get("/static/chat.js").status_code == 200
    assert client.get("/static/duet.css").status_code == 200


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"content": ""}, "empty"),
        ({"content": "   \n "}, "empty"),
        ({"content": "x" * 101}, "limit is 100"),
        ({"system_prompt": "y" * 101}, "system prompt"),
        ({"temperature": "2.5"}, "Temperature must be between 0 and 2"),
        ({"temperature": "-0.1"}, "Temperature"),
        ({"temperature": "nan"}, "Temperature"),
        ({"temperature": "warm"}, "Temperature must be a number"),
        ({"top_p": "0"}, "Top-p must be greater than 0"),
        ({"top_p": "1.01"}, "Top-p"),
        ({"top_k": "-1"}, "Top-k"),
        ({"top_k": "2.5"}, "Top-k must be a whole number"),
        ({"max_tokens": "0"}, "Max tokens"),
        ({"max_tokens": "40000"}, "Max tokens must be between 1 and 32,768"),
        ({"engine": "llama.cpp"}, "Unknown engine 'llama.cpp'"),
        ({"conversation_id": "abc"}, "Bad conversation id"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    client: TestClient, db: sqlite3.Connection, change: dict[str, str], expected: str
) -> None:
    response = client.post("/chat/send", data={**VALID_FORM, **change})
    assert response.status_code == 422
    assert expected in response.json()["error"]
    assert count(db, "conversations") == 0
    assert count(db, "messages") == 0


def test_htmx_errors_go_to_the_flash_region(client: TestClient, db: sqlite3.Connection) -> None:
    response = client.post("/chat/send", data={**VALID_FORM, "temperature": "9"}, headers=HX)
    assert response.status_code == 422
    # Retargeted to #flash: the composer (and what the user typed) is left as it was.
    assert response.headers["HX-Retarget"] == "#flash"
    assert "Temperature must be between 0 and 2" in response.text
    assert "Traceback" not in response.text
    assert count(db, "messages") == 0


def test_every_page_with_htmx_actions_has_the_flash_region(
    client: TestClient, db: sqlite3.Connection
) -> None:
    """An htmx request that fails is answered into `#flash` (HX-Retarget); on a page without
    that region the error shows nowhere (deleting a run from /runs said nothing)."""
    run = runs.create_run(
        db,
        LOCAL_USER_ID,
        prompt="Hi",
        system_prompt="",
        mode="sequential",
        thinking=False,
        parameters={},
        engines=[("vllm", "qwen3")],
    )
    conversation = conversations.create_conversation(db, LOCAL_USER_ID, "Seeded")
    pages = ["/", f"/c/{conversation.id}", "/compare", "/runs", f"/runs/{run.id}", "/trash"]
    with_actions = []
    for page in pages:
        html = client.get(page).text
        if re.search(r"hx-(post|delete|put|patch)=", html):
            with_actions.append(page)
            assert html.count('id="flash"') == 1, page
    assert {"/", "/runs", f"/runs/{run.id}"} <= set(with_actions), with_actions


def test_an_answer_view_answers_bad_input_and_bugs_as_every_route_does(
    client: TestClient, db: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad input through the app's error handler; a bug is a plain 500, and the connection
    it came on still serves the next request."""
    response = client.post("/chat/send", data={**VALID_FORM, "top_p": "0"}, headers=HX)
    assert response.status_code == 422 and response.headers["HX-Retarget"] == "#flash"
    called: list[str] = []

    def broken_parse(form: object, settings: object) -> str:
        called.append("parse_content")
        raise RuntimeError("a bug in the view")

    monkeypatch.setattr(chat_views, "parse_content", broken_parse)
    # Without `with`: the app is already running (the `client` fixture started it).
    raw = TestClient(client.app, base_url=LOCAL, raise_server_exceptions=False)
    failed = raw.post("/chat/send", data=VALID_FORM)
    assert called and failed.status_code == 500
    assert failed.text == "Internal Server Error"
    assert count(db, "messages") == 0


def test_unknown_conversation_is_404_and_stores_nothing(
    client: TestClient, db: sqlite3.Connection
) -> None:
    response = client.post("/chat/send", data={**VALID_FORM, "conversation_id": "999"})
    assert response.status_code == 404
    assert count(db, "messages") == 0
    page = client.get("/c/999", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert "was not found" in page.text


def test_engine_down_at_request_time_fails_the_answer_with_a_reason(
    client: TestClient, db: sqlite3.Connection, down_engines: dict[str, DownEngine]
) -> None:
    response = client.post("/chat/send", data=VALID_FORM, headers=HX)
    assert response.status_code == 200
    assert "Hello there" in response.text
    assert "data-stream=" in response.text
    conversation_id = int(response.headers["HX-Push-Url"].removeprefix("/c/"))
    user_message, answer = messages.list_messages(db, conversation_id)
    assert user_message.content == "Hello there"

    events = read_events(client, f"/messages/{answer.id}/stream")
    assert events[-1][0] == "end"
    assert events[-1][1]["status"] == "failed"
    assert down_engines["vllm"].requests == 1

    stored = messages.require_message(db, answer.id)
    assert stored.status == "failed"
    assert stored.error is not None
    assert "vLLM" in stored.error
    assert "ConnectError" in stored.error
    # The stored parameters are what was asked for.
    assert stored.parameters["temperature"] == 0.6
    assert stored.thinking is True

    fragment = client.get(f"/messages/{answer.id}")
    assert "message-error" in fragment.text
    assert "Traceback" not in fragment.text
    # The user's words survive the failure.
    assert "Hello there" in client.get(f"/c/{conversation_id}").text


def test_event_stream_headers_prevent_buffering(client: TestClient) -> None:
    client.post("/chat/send", data=VALID_FORM)
    answer_id = client.app.state.db.execute(  # type: ignore[attr-defined]
        "SELECT id FROM messages WHERE role = 'assistant'"
    ).fetchone()[0]
    with client.stream(
        "GET", f"/messages/{answer_id}/stream", headers={"Accept-Encoding": "gzip"}
    ) as response:
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-cache"
        assert "content-encoding" not in response.headers
        response.read()


def test_finished_answer_stream_says_end_at_once(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation = conversations.create_conversation(db, LOCAL_USER_ID, "done")
    answer = messages.start_assistant_message(
        db, conversation.id, engine="vllm", model="m", thinking=False, parameters={}
    )
    messages.save_assistant(db, answer.id, AnswerRecord("complete", content="ok"))
    assert read_events(client, f"/messages/{answer.id}/stream") == [
        ("end", {"status": "complete", "error": None}, None)
    ]


def test_second_message_joins_the_conversation(client: TestClient, db: sqlite3.Connection) -> None:
    first = client.post("/chat/send", data=VALID_FORM, headers=HX)
    conversation_id = int(first.headers["HX-Push-Url"].removeprefix("/c/"))
    answer_id = messages.list_messages(db, conversation_id)[-1].id
    read_events(client, f"/messages/{answer_id}/stream")  # wait for it to fail
    second = client.post(
        "/chat/send",
        data={**VALID_FORM, "content": "again", "conversation_id": str(conversation_id)},
        headers=HX,
    )
    assert second.status_code == 200
    assert "HX-Push-Url" not in second.headers
    assert [m.content for m in messages.list_messages(db, conversation_id) if m.role == "user"] == [
        "Hello there",
        "again",
    ]


def test_health_reports_down_engines_clearly(client: TestClient) -> None:
    report = client.get("/health").json()
    assert {entry["engine"] for entry in report["engines"]} == {"vllm", "ollama"}
    for entry in report["engines"]:
        assert entry["up"] is False
        assert "127.0.0.1" in entry["detail"]
    badges = client.get("/health/badges")
    assert badges.text.count('class="badge down"') == 2
    assert "vLLM" in badges.text


def test_mode_switch_moves_only_untouched_sampling_fields(client: TestClient) -> None:
    # Non-thinking defaults, with temperature changed by the user; thinking switched on.
    fragment = client.get(
        "/composer/sampling",
        params={"thinking": "on", "temperature": "1.1", "top_p": "0.8", "top_k": "20"},
    ).text
    assert 'name="temperature" value="1.1"' in fragment
    assert 'name="top_p" value="0.95"' in fragment
    # And back: thinking switched off.
    fragment = client.get(
        "/composer/sampling", params={"temperature": "0.6", "top_p": "0.95", "top_k": "20"}
    ).text
    assert 'name="temperature" value="0.7"' in fragment
    assert 'name="top_p" value="0.8"' in fragment


def seed_conversation(db: sqlite3.Connection, *texts: str) -> int:
    conversation = conversations.create_conversation(db, LOCAL_USER_ID, texts[0])
    for index, text in enumerate(texts):
        if index % 2 == 0:
            messages.add_user_message(db, conversation.id, text)
        else:
            answer = messages.start_assistant_message(
                db, conversation.id, engine="vllm", model="m", thinking=True, parameters={}
            )
            messages.save_assistant(
                db,
                answer.id,
                AnswerRecord("complete", content=text, reasoning="hmm", ttft_ms=5.0),
            )
    return conversation.id


def test_regenerate_only_the_last_answer(client: TestClient, db: sqlite3.Connection) -> None:
    conversation_id = seed_conversation(db, "q1", "a1", "q2", "a2")
    history = messages.list_messages(db, conversation_id)
    options = {k: v for k, v in VALID_FORM.items() if k != "content"}
    refused = client.post(f"/messages/{history[1].id}/regenerate", data=options)
    assert refused.status_code == 409
    accepted = client.post(f"/messages/{history[3].id}/regenerate", data=options, headers=HX)
    assert accepted.status_code == 200
    assert accepted.headers["HX-Retarget"] == "#messages"
    after = messages.list_messages(db, conversation_id)
    # The earlier answer is kept, as another version (tests/test_answer_versions.py).
    assert after[:4] == history
    assert len(after) == 5 and after[4].status in {"streaming", "failed"}


def test_edit_last_message_resends_in_place(client: TestClient, db: sqlite3.Connection) -> None:
    conversation_id = seed_conversation(db, "q1", "a1", "q2", "a2")
    history = messages.list_messages(db, conversation_id)
    response = client.post(
        f"/messages/{history[2].id}/edit", data={**VALID_FORM, "content": "q2 edited"}, headers=HX
    )
    assert response.status_code == 200
    after = messages.list_messages(db, conversation_id)
    assert [m.content for m in after[:3]] == ["q1", "a1", "q2 edited"]
    assert len(after) == 4 and after[3].id != history[3].id


def test_edit_earlier_message_forks_and_keeps_the_original(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation_id = seed_conversation(db, "q1", "a1", "q2", "a2")
    history = messages.list_messages(db, conversation_id)
    response = client.post(
        f"/messages/{history[0].id}/edit", data={**VALID_FORM, "content": "q1 edited"}, headers=HX
    )
    fork_id = int(response.headers["HX-Redirect"].removeprefix("/c/"))
    assert fork_id != conversation_id
    assert [m.content for m in messages.list_messages(db, conversation_id)] == [
        "q1",
        "a1",
        "q2",
        "a2",
    ]
    assert messages.list_messages(db, fork_id)[0].content == "q1 edited"


def test_edit_with_bad_input_changes_nothing(client: TestClient, db: sqlite3.Connection) -> None:
    conversation_id = seed_conversation(db, "q1", "a1")
    history = messages.list_messages(db, conversation_id)
    response = client.post(f"/messages/{history[0].id}/edit", data={**VALID_FORM, "content": ""})
    assert response.status_code == 422
    assert messages.list_messages(db, conversation_id) == history


def test_sidebar_search_rename_delete(client: TestClient, db: sqlite3.Connection) -> None:
    cats = seed_conversation(db, "Tell me about cats", "Cats <b>purr</b>.")
    seed_conversation(db, "Tell me about dogs", "Dogs bark.")

    listing = client.get("/conversations").text
    assert "Tell me about cats" in listing and "Tell me about dogs" in listing

    found = client.get("/conversations", params={"q": "purr"}).text
    assert f'href="/c/{cats}"' in found
    assert "<mark>purr</mark>" in found
    assert "<b>" not in found  # snippets are escaped before the match is marked
    assert "Nothing matches" in client.get("/conversations", params={"q": "zebra"}).text

    renamed = client.post(f"/conversations/{cats}/rename", data={"title": "Felines"})
    assert renamed.status_code == 200 and "Felines" in renamed.text
    assert client.post(f"/conversations/{cats}/rename", data={"title": "  "}).status_code == 422
    assert conversations.get_conversation(db, LOCAL_USER_ID, cats).title == "Felines"

    assert client.delete(f"/conversations/{cats}").status_code == 200
    assert conversations.get_conversation(db, LOCAL_USER_ID, cats) is None
    assert client.delete(f"/conversations/{cats}").status_code == 404


def test_delete_of_open_conversation_goes_to_a_new_chat(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation_id = seed_conversation(db, "bye")
    response = client.delete(
        f"/conversations/{conversation_id}",
        headers={**HX, "HX-Current-URL": f"http://testserver/c/{conversation_id}"},
    )
    assert response.headers["HX-Redirect"] == f"/?trashed={conversation_id}"  # with its Undo


def test_export_markdown_and_json(client: TestClient, db: sqlite3.Connection) -> None:
    conversation_id = seed_conversation(db, "What is 2+2?", "**4**")
    markdown = client.get(f"/conversations/{conversation_id}/export.md")
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "attachment" in markdown.headers["content-disposition"]
    assert "## You\n\nWhat is 2+2?" in markdown.text
    assert "## vLLM · m · thinking" in markdown.text
    assert "> hmm" in markdown.text
    assert "**4**" in markdown.text

    document = client.get(f"/conversations/{conversation_id}/export.json").json()
    assert document["conversation"]["id"] == conversation_id
    assert [m["content"] for m in document["messages"]] == ["What is 2+2?", "**4**"]
    assert document["messages"][1]["ttft_ms"] == 5.0

    assert client.get(f"/conversations/{conversation_id}/export.txt").status_code == 404
    assert client.get("/conversations/999/export.md").status_code == 404


def test_model_html_in_a_stored_answer_is_rendered_inert(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation_id = seed_conversation(
        db, "<script>alert('user')</script>", "<script>x()</script>"
    )
    page = client.get(f"/c/{conversation_id}").text
    assert "<script>alert" not in page
    assert "<script>x()" not in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page


def test_startup_marks_leftover_streaming_answers_interrupted(
    database: Path, down_engines: dict[str, DownEngine]
) -> None:
    db = open_database(database)
    conversation = conversations.create_conversation(db, LOCAL_USER_ID, "crashed")
    answer = messages.start_assistant_message(
        db, conversation.id, engine="vllm", model="m", thinking=False, parameters={}
    )
    messages.save_assistant(db, answer.id, AnswerRecord("streaming", content="half an"))
    db.close()
    with TestClient(
        create_app(Settings(), engines=down_engines, database=database), base_url=LOCAL
    ) as client:
        page = client.get(f"/c/{conversation.id}").text
        assert "half an" in page
        assert "status-interrupted" in page
        assert "data-stream=" not in page


def test_the_running_app_keeps_its_startup_heap_out_of_the_collectors_way(
    database: Path, down_engines: dict[str, DownEngine]
) -> None:
    """What exists once the app has started lives as long as the server: it is frozen
    (`gc.freeze`), so the garbage collector's full passes, during which every stream stands
    still, skip it. Stopping the app hands it back."""
    with TestClient(
        create_app(Settings(), engines=down_engines, database=database), base_url=LOCAL
    ) as client:
        assert client.get("/").status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0
