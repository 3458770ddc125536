"""Bad input of every kind issue 11 found a 500 for (or a silent misreading of) gets a 4xx that
says what was wrong, stores nothing, and never reaches a different object; a database that
cannot be used stops `duet serve` with one line naming it; a delete racing a send leaves the
database consistent.

Cases that apply to many routes are built from the app's route table, so a route added
tomorrow is checked too. Cross-site requests, Host, headers, body limits, exports and search
are tested in test_security*.py and test_exports_search.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.engines.openai import VllmEngine
from duet.settings import Settings
from duet.store import (
    StorageError,
    conversations,
    display_path,
    messages,
    open_database,
    runs,
    shares,
)
from duet.store.messages import AnswerRecord
from duet.store.users import LOCAL_USER_ID
from duet.views.params import MAX_PAGE
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route
from test_request_path import route_table
from test_views import LOCAL, VALID_FORM, count

# Conversations, compare runs (two answers each) and answers seeded, so that an id misread as
# 1 or as 10 (an Arabic-Indic one, " 1", "1_0") finds an object and shows up as a success.
SEEDED = 10

ARABIC_INDIC_ONE = "\u0661"  # int() reads it as 1

# Ids no route may take: past SQLite's integers, other scripts' and superscript digits, what
# int() or pydantic would read as another number, and numbers no row has.
BAD_IDS = [
    str(2**63),
    str(2**64),
    str(10**30),
    "²",
    ARABIC_INDIC_ONE,
    "1_0",
    " 1",
    "1.0",
    "+1",
    "-1",
    "0",
]

# The ids of what `seed` makes.
SEEDED_KINDS = {"conversation_id", "message_id", "run_id", "answer_id", "share_id"}

TABLES = ("conversations", "messages", "compare_runs", "compare_answers")


def seed(db: sqlite3.Connection, n: int = SEEDED) -> None:
    """n conversations of a question and a finished answer (messages 2k-1 and 2k), each shared
    once, and n finished compare runs of two answers each."""
    for index in range(1, n + 1):
        conversation = conversations.create_conversation(db, LOCAL_USER_ID, f"Chat {index}")
        messages.add_user_message(db, conversation.id, "Tell me about cats")
        answer = messages.start_assistant_message(
            db, conversation.id, engine="vllm", model="qwen3-test", thinking=False, parameters={}
        )
        messages.save_assistant(db, answer.id, AnswerRecord("complete", content="Cats purr."))
        shares.create_share(db, LOCAL_USER_ID, "conversation", conversation.id)
        run = runs.create_run(
            db,
            LOCAL_USER_ID,
            prompt="Tell me about cats",
            system_prompt="",
            mode="concurrent",
            thinking=False,
            parameters={"temperature": 0.0, "max_tokens": 8},
            engines=[("vllm", "qwen3-test"), ("ollama", "qwen3-test")],
        )
        for compare_answer in run.answers:
            runs.finish_unstarted(db, compare_answer.id, "failed", "The engine was down.")


def row_counts(db: sqlite3.Connection) -> dict[str, int]:
    return {table: count(db, table) for table in TABLES}


def assert_consistent(db: sqlite3.Connection) -> None:
    assert [tuple(row) for row in db.execute("PRAGMA integrity_check")] == [("ok",)]
    assert [tuple(row) for row in db.execute("PRAGMA foreign_key_check")] == []


def down_engines() -> dict[str, DownEngine]:
    port = closed_port()
    return {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }


def build_app(database: Path) -> FastAPI:
    return create_app(Settings(), engines=down_engines(), database=database)  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = build_app(tmp_path / "duet.sqlite3")
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as test_client:
        seed(test_client.app.state.db)  # type: ignore[attr-defined]
        yield test_client


@pytest.fixture
def db(client: TestClient) -> sqlite3.Connection:
    return client.app.state.db  # type: ignore[attr-defined, no-any-return]


def id_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route that takes an id in its path."""
    found = []
    for route in route_table(build_app(Path(":memory:")).routes):
        if isinstance(route, Route) and re.search(r"\{\w+_id\}", route.path):
            found.extend((m, route.path) for m in sorted(route.methods or ()) if m != "HEAD")
    return found


def request_with_id(client: TestClient, method: str, template: str, raw_id: str) -> int:
    """The route's request with `raw_id` in its path and a body it would accept."""
    path = re.sub(r"\{\w+_id\}", quote(raw_id), template).replace("{extension}", "json")
    if path.endswith("/browser"):
        return client.post(path, json={"arrivals": []}).status_code
    data = {**VALID_FORM, "title": "Renamed"} if method == "POST" else None
    if path.endswith("/again"):  # the other engine than the one that answered
        data = {"engine": "ollama"}
    return client.request(method, path, data=data).status_code


@pytest.mark.parametrize(("method", "template"), id_routes())
def test_no_route_takes_a_bad_id_or_reads_it_as_another(
    client: TestClient, db: sqlite3.Connection, method: str, template: str
) -> None:
    """Every bad id is refused (4xx, never 5xx) and changes nothing; then a real id is served,
    so the refusals were the id's doing. Before views/params.py, ids ≥ 2**63 were 500s on every
    such route and pydantic read "1_0" as 10 and " 1", "+1", "1.0" as 1."""
    before = list(db.iterdump())
    for raw_id in BAD_IDS:
        status = request_with_id(client, method, template, raw_id)
        assert 400 <= status < 500, f"{method} {template} with id {raw_id!r}: {status}"
    assert list(db.iterdump()) == before
    if not set(re.findall(r"\{(\w+_id)\}", template)) <= SEEDED_KINDS:
        return  # no such object is seeded to show a real id served
    # Some routes take only a user message (edit), some only an answer (regenerate).
    served = [request_with_id(client, method, template, good) for good in ("1", "2")]
    assert min(served) < 400, f"{method} {template} refused real ids too: {served}"


def test_a_bad_id_gets_a_message_saying_what_was_wrong(client: TestClient) -> None:
    for raw_id in ("1_0", str(2**63), ARABIC_INDIC_ONE):
        response = client.get(f"/c/{quote(raw_id)}", headers={"Accept": "application/json"})
        assert response.status_code == 422
        assert "conversation_id" in response.json()["error"]


@pytest.mark.parametrize(
    "page", [str(2**63), str(10**30), str(MAX_PAGE + 1), "²", ARABIC_INDIC_ONE, "-1", "0"]
)
def test_a_bad_page_of_runs_is_refused(client: TestClient, page: str) -> None:
    """(2**63 overflowed the offset into a 500; -1 and 0 silently meant page 1.)"""
    response = client.get("/runs", params={"page": page}, headers={"Accept": "application/json"})
    assert response.status_code == 422
    assert "page" in response.json()["error"]


def test_the_pages_of_runs_within_bounds_are_served(client: TestClient) -> None:
    assert client.get("/runs", params={"page": "1"}).status_code == 200
    assert client.get("/runs", params={"page": str(MAX_PAGE)}).status_code == 200


STREAMS = ["/messages/2/stream", "/compare/answers/2/stream"]


@pytest.mark.parametrize("path", STREAMS)
@pytest.mark.parametrize("last_event_id", [ARABIC_INDIC_ONE, "²", "9" * 4300, "-1", "1_0", " 1 2"])
def test_a_bad_last_event_id_is_refused(client: TestClient, path: str, last_event_id: str) -> None:
    """(int() of 4,300 digits or of "²" was a 500; an Arabic-Indic one silently meant 1.)"""
    headers = {"Last-Event-ID": last_event_id.encode(), "Accept": "application/json"}
    response = client.get(path, headers=headers)  # type: ignore[arg-type]
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]


@pytest.mark.parametrize("path", STREAMS)
def test_a_good_last_event_id_resumes_the_stream(client: TestClient, path: str) -> None:
    with client.stream("GET", path, headers={"Last-Event-ID": "3"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "event: end" in response.read().decode()


def browser_arrivals(db: sqlite3.Connection, answer_id: int) -> str | None:
    row = db.execute("SELECT browser_arrivals FROM compare_answers WHERE id = ?", (answer_id,))
    return row.fetchone()[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"arrivals": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a": ' * 100_000 + b"0" + b"}" * 100_000,
    ],
    ids=["list", "arrivals", "object"],
)
def test_json_nested_100000_deep_is_refused(
    client: TestClient, db: sqlite3.Connection, body: bytes
) -> None:
    response = client.post(
        "/compare/answers/1/browser",
        content=body,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert response.status_code == 422
    assert "nested too deeply" in response.json()["error"]
    assert browser_arrivals(db, 1) is None


@pytest.mark.parametrize(
    ("arrival", "name"),
    [
        ([10**30, 1, "a", 1], "time"),
        ([5.0, 10**30, "a", 1], "chunk"),
        ([5.0, 1, "a", 10**30], "chars"),
        ([1e30, 1, "a", 1], "time"),
    ],
)
def test_arrival_values_past_any_answer_are_refused(
    client: TestClient, db: sqlite3.Connection, arrival: list, name: str
) -> None:
    """(A chunk count of 10**30 was stored as given.)"""
    response = client.post(
        "/compare/answers/1/browser",
        json={"arrivals": [arrival]},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 422
    assert name in response.json()["error"]
    assert browser_arrivals(db, 1) is None
    good = client.post("/compare/answers/1/browser", json={"arrivals": [[5.0, 1, "a", 3]]})
    assert good.status_code == 200
    assert browser_arrivals(db, 1) is not None


COMPARE_FORM = {
    "engines": "vllm",
    "mode": "concurrent",
    **{k: v for k, v in VALID_FORM.items() if k not in {"engine", "content"}},
}

# (route, the form's other fields, the field that gets bytes that are not UTF-8)
NOT_UTF8_FORMS = [
    ("/chat/send", VALID_FORM, "content"),
    ("/chat/send", {**VALID_FORM, "conversation_id": "1"}, "content"),
    ("/chat/send", VALID_FORM, "system_prompt"),
    ("/compare", {**COMPARE_FORM, "content": "Hello"}, "content"),
    ("/messages/19/edit", VALID_FORM, "content"),
    ("/conversations/1/rename", {}, "title"),
]


@pytest.mark.parametrize(("path", "fields", "name"), NOT_UTF8_FORMS)
@pytest.mark.parametrize("encoded", [b"%FF%FE", b"\xff\xfe", b"%ED%A0%80", b"caf%E9"])
def test_a_form_that_is_not_utf8_is_refused_and_nothing_is_stored(
    client: TestClient,
    db: sqlite3.Connection,
    path: str,
    fields: dict[str, str],
    name: str,
    encoded: bytes,
) -> None:
    """Percent-escaped or raw, a lone surrogate's UTF-8 or Latin-1: each was stored as U+FFFD."""
    others = {k: v for k, v in fields.items() if k != name}
    body = urlencode(others).encode() + b"&" + name.encode() + b"=" + encoded
    before = list(db.iterdump())
    response = client.post(
        path,
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
    )
    assert response.status_code == 422
    assert "UTF-8" in response.json()["error"]
    assert list(db.iterdump()) == before
    # The same form in UTF-8 goes through.
    good = client.post(path, data={**others, name: "café"})
    assert good.status_code < 400, good.text


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=x"])
def test_a_multipart_form_that_cannot_be_read_is_refused_like_any_bad_input(
    client: TestClient, db: sqlite3.Connection, content_type: str
) -> None:
    """Told as Duet tells bad input (in the page's flash region for htmx), not as Starlette's
    bare {"detail": ...}."""
    before = list(db.iterdump())
    headers = {"Content-Type": content_type, "HX-Request": "true"}
    response = client.post("/chat/send", content=b"content=Hello", headers=headers)
    assert response.status_code == 400
    assert response.headers["HX-Retarget"] == "#flash"
    assert "The form could not be read" in response.text
    assert list(db.iterdump()) == before


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"])
def test_no_schema_or_api_docs_are_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


# Start-up: database paths that cannot be used, made without chattr or a non-root user (as
# root, permission bits do not stop writes; a read-only mount and /proc do).


def under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file" / "duet.sqlite3"


def a_folder(tmp_path: Path) -> Path:
    (tmp_path / "a-folder").mkdir()
    return tmp_path / "a-folder"


def on_proc(tmp_path: Path) -> Path:
    return Path("/proc/duet.sqlite3")


UNUSABLE = [
    pytest.param(under_a_file, id="under-a-file"),
    pytest.param(a_folder, id="a-folder"),
    pytest.param(on_proc, id="on-proc"),
]


@pytest.mark.parametrize("make_path", UNUSABLE)
def test_a_database_that_cannot_be_used_is_named_with_the_cause(
    tmp_path: Path, make_path: Callable[[Path], Path]
) -> None:
    path = make_path(tmp_path)
    with pytest.raises(StorageError) as raised:
        open_database(path)
    assert display_path(path) in str(raised.value)


def serve_command() -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from duet.cli import main; sys.exit(main())",
        "serve",
    ]


def serve_with_database(
    path: Path, command: list[str] | None = None
) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "DUET_DATABASE": str(path),
        "DUET_HOST": "127.0.0.1",
        "DUET_PORT": str(closed_port()),
    }
    return subprocess.run(
        command or serve_command(),
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_refused_in_one_line(result: subprocess.CompletedProcess, path: Path) -> None:
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0, output
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert display_path(path) in lines[0]


@pytest.mark.parametrize("make_path", UNUSABLE)
def test_duet_serve_with_a_database_it_cannot_use_says_so_in_one_line(
    tmp_path: Path, make_path: Callable[[Path], Path]
) -> None:
    """(It printed uvicorn's traceback, which never named the path.)"""
    path = make_path(tmp_path)
    assert_refused_in_one_line(serve_with_database(path), path)


def in_read_only_folder(folder: Path, command: list[str]) -> list[str]:
    """`command` run in a private mount namespace where `folder` is a read-only bind mount of
    itself (nothing outside that process sees the mount)."""
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, "sh", str(folder), *command]


@pytest.fixture
def read_only_mounts(tmp_path: Path) -> None:
    probe = in_read_only_folder(tmp_path, ["true"])
    try:
        result = subprocess.run(probe, capture_output=True, timeout=10, check=False)
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    if result.returncode != 0:
        pytest.skip(f"no private read-only mount here: {result.stderr.decode().strip()}")


@pytest.mark.parametrize(
    "existing",
    [
        pytest.param(False, id="new-file"),
        pytest.param(True, id="read-only-file"),
    ],
)
def test_duet_serve_in_a_read_only_folder_says_so_in_one_line(
    tmp_path: Path, read_only_mounts: None, existing: bool
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "duet.sqlite3"
    if existing:
        open_database(path).close()
    result = serve_with_database(path, in_read_only_folder(folder, serve_command()))
    assert_refused_in_one_line(result, path)


# A delete racing a send to a slow engine. Two kinds of slow: one that takes the request and
# never answers (the delete comes while the answer streams), and one whose connection waits
# in the kernel (the delete comes while the send still waits for its request to be on the
# wire: before rows were written first, that was when the send stored its turn).


class SilentEngineServer:
    """A loopback server that accepts connections, reads what comes and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self.read, args=(connection,), daemon=True).start()

    def read(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while connection.recv(65536):
                pass

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


class UnacceptingEngineServer:
    """A loopback port whose connections are never set up: it listens with room for one
    connection waiting to be accepted, which a connection of its own takes, so the kernel
    drops every further handshake and a client's connect waits."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port))

    def close(self) -> None:
        self.filler.close()
        self.listener.close()


@pytest.fixture(params=[SilentEngineServer, UnacceptingEngineServer], ids=["silent", "unaccepting"])
def slow_engine_port(request: pytest.FixtureRequest) -> Iterator[int]:
    server = request.param()
    yield server.port
    server.close()


def test_deleting_a_conversation_while_a_send_waits_on_the_engine(
    tmp_path: Path, slow_engine_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The send into a conversation and its deletion race; neither is a 5xx, the conversation
    and everything in it is gone (through the trash), and the database is consistent. (With the
    engine that never takes the connection this was a foreign-key error and a 500: the
    conversation was deleted while the send waited for its request to go out, before it stored
    the user's message.)"""
    engine = VllmEngine(
        "vllm",
        "vLLM",
        f"http://127.0.0.1:{slow_engine_port}",
        "qwen3-test",
        connect_timeout=60.0,
        read_timeout=60.0,
    )
    app = create_app(Settings(), engines={"vllm": engine}, database=tmp_path / "duet.sqlite3")
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        db: sqlite3.Connection = client.app.state.db  # type: ignore[attr-defined]
        seed(db, 1)
        generations = client.app.state.generations  # type: ignore[attr-defined]
        sent: list[int] = []
        form = {**VALID_FORM, "conversation_id": "1"}
        sending = threading.Thread(
            target=lambda: sent.append(client.post("/chat/send", data=form).status_code)
        )
        sending.start()
        deadline = time.monotonic() + 10
        while generations.streaming_in(1) is None:
            assert sending.is_alive() and time.monotonic() < deadline, f"no answer started: {sent}"
            time.sleep(0.001)
        deleted = client.delete("/conversations/1")
        sending.join(10)
        assert sent and sent[0] < 500, f"the send: {sent}"
        assert deleted.status_code == 200, deleted.text
        while generations.streaming_in(1) is not None:
            assert time.monotonic() < deadline, "the answer never stopped"
            time.sleep(0.01)
        assert client.get("/c/1").status_code == 404
        # In the trash with whatever the send stored; deleted from there, nothing is left.
        assert client.delete("/trash/1").status_code == 200
        assert count(db, "conversations") == count(db, "messages") == 0
        assert_consistent(db)
    assert not [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}], caplog.text
