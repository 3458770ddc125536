"""Compare runs without engines: the store's queries, the browser-arrival checks, the numbers
computed from stored arrivals, the timeline geometry, the CSV and JSON exports, and the compare
page's refusals of bad input."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.exports.run import runs_csv, runs_json
from duet.metrics.answers import ArrivalsError, answer_metrics, parse_browser_arrivals
from duet.metrics.timeline import build_timeline, scale_for
from duet.settings import Settings
from duet.store import conversations, messages, open_database, runs
from duet.store.db import now_iso
from duet.store.messages import AnswerRecord
from duet.store.runs import CompareRun
from duet.store.users import LOCAL_USER_ID
from fastapi.testclient import TestClient

# Where a local Duet is reached: a loopback name, which the host check lets through.
LOCAL = "http://127.0.0.1:8080"

# A steady server stream: 6 answer chunks 20 ms apart, first at 100 ms; chunk 0 is role-only.
SERVER = [[0.0, 0, "a", 0], *[[100.0 + 20 * i, i + 1, "a", 3] for i in range(6)]]
# The same chunks at the browser, 5 ms later each: steady.
BROWSER_STEADY = [[105.0 + 20 * i, i + 1, "a", 3] for i in range(6)]
# The same chunks held and let go in two clumps of three: what a buffering hop produces.
BROWSER_BURSTY = [
    *([145.0 + 0.2 * i, i + 1, "a", 3] for i in range(3)),
    *([205.0 + 0.2 * i, i + 4, "a", 3] for i in range(3)),
]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_database(tmp_path / "duet.sqlite3")
    yield connection
    connection.close()


def new_run(
    db: sqlite3.Connection, prompt: str = "Hello", user_id: int = LOCAL_USER_ID
) -> CompareRun:
    return runs.create_run(
        db,
        user_id,
        prompt=prompt,
        system_prompt="",
        mode="concurrent",
        thinking=False,
        parameters={"temperature": 0.0, "max_tokens": 8},
        engines=[("vllm", "qwen3-a"), ("ollama", "qwen3-b")],
    )


def finish_answer(db: sqlite3.Connection, answer_id: int, arrivals: list, tokens: int = 6) -> None:
    """End an answer with these server arrivals, as a finished generation saves it."""
    outcome = AnswerRecord(
        "complete",
        content="abcdefghijklmnopqr",
        reasoning="Let me think.",
        finish_reason="stop",
        prompt_tokens=4,
        completion_tokens=tokens,
        ttft_ms=arrivals[1][0] if len(arrivals) > 1 else None,
        ttfa_ms=arrivals[1][0] if len(arrivals) > 1 else None,
        total_ms=arrivals[-1][0] if arrivals else None,
        arrivals=[tuple(entry) for entry in arrivals],  # type: ignore[misc]
        engine_timings={"eval_duration": 0.5},
    )
    runs.mark_streaming(db, answer_id, 3.5)
    runs.save_answer(db, answer_id, outcome)


def test_a_new_run_has_one_queued_answer_per_engine_in_column_order(db: sqlite3.Connection) -> None:
    run = new_run(db)
    assert [(a.position, a.engine, a.model, a.status) for a in run.answers] == [
        (0, "vllm", "qwen3-a", "queued"),
        (1, "ollama", "qwen3-b", "queued"),
    ]
    assert not run.finished
    assert run.parameters == {"temperature": 0.0, "max_tokens": 8}


def test_create_run_refuses_a_bad_mode_and_no_engines(db: sqlite3.Connection) -> None:
    common = {"prompt": "x", "system_prompt": "", "thinking": False, "parameters": {}}
    with pytest.raises(ValueError, match="mode"):
        runs.create_run(db, LOCAL_USER_ID, mode="parallel", engines=[("vllm", "m")], **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one engine"):
        runs.create_run(db, LOCAL_USER_ID, mode="concurrent", engines=[], **common)


def test_a_finished_answer_is_kept_in_its_runs_row_and_makes_no_conversation(
    db: sqlite3.Connection,
) -> None:
    run = new_run(db)
    first = run.answers[0]
    finish_answer(db, first.id, SERVER)
    answer = runs.get_answer(db, LOCAL_USER_ID, first.id)
    assert answer is not None
    assert (answer.status, answer.started_ms, answer.output_tokens) == ("complete", 3.5, 6)
    assert (answer.content, answer.reasoning, answer.finish_reason) == (
        "abcdefghijklmnopqr", "Let me think.", "stop",
    )  # fmt: skip
    assert (answer.ttft_ms, answer.total_ms) == (100.0, 200.0)
    assert answer.server_arrivals == [tuple(entry) for entry in SERVER]
    assert answer.engine_timings == {"eval_duration": 0.5}
    assert answer.finished
    assert (answer.conversation_id, answer.message_id) == (None, None)
    assert db.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_continuing_an_answer_makes_one_conversation_of_the_prompt_and_the_answer(
    db: sqlite3.Connection,
) -> None:
    run = new_run(db, "Why is the sky blue?")
    first = run.answers[0]
    finish_answer(db, first.id, SERVER)
    answer = runs.get_answer(db, LOCAL_USER_ID, first.id)
    assert answer is not None
    made = runs.continue_in_chat(db, LOCAL_USER_ID, first.id, "Why is the sky blue? · vLLM")
    conversation = conversations.get_conversation(db, LOCAL_USER_ID, made)
    assert conversation is not None and conversation.title == "Why is the sky blue? · vLLM"
    question, reply = messages.list_messages(db, made)
    assert (question.role, question.content, question.created_at) == (
        "user", "Why is the sky blue?", run.created_at,
    )  # fmt: skip
    assert (reply.role, reply.engine, reply.model, reply.status) == (
        "assistant", "vllm", "qwen3-a", "complete",
    )  # fmt: skip
    assert (reply.content, reply.reasoning, reply.finish_reason) == (
        answer.content, answer.reasoning, "stop",
    )  # fmt: skip
    assert (reply.prompt_tokens, reply.completion_tokens) == (4, 6)
    assert (reply.ttft_ms, reply.ttfa_ms, reply.total_ms) == (100.0, 100.0, 200.0)
    assert reply.arrivals == answer.server_arrivals
    assert reply.engine_timings == {"eval_duration": 0.5}
    assert reply.parameters == run.parameters and reply.thinking is False
    linked = runs.get_answer(db, LOCAL_USER_ID, first.id)
    assert linked is not None and (linked.conversation_id, linked.message_id) == (made, reply.id)
    # Again: the same conversation, not a second one.
    assert runs.continue_in_chat(db, LOCAL_USER_ID, first.id, "another title") == made
    assert db.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1
    # Deleting that conversation leaves the run as it was; continuing again makes a new one.
    conversations.delete_conversation(db, LOCAL_USER_ID, made)
    kept = runs.get_answer(db, LOCAL_USER_ID, first.id)
    assert kept is not None and (kept.conversation_id, kept.message_id) == (None, None)
    assert (kept.content, kept.server_arrivals) == (answer.content, answer.server_arrivals)
    again = runs.continue_in_chat(db, LOCAL_USER_ID, first.id, "t")
    assert again != made
    # Another user's answer is not theirs to continue.
    db.execute("INSERT INTO users (id, name, created_at) VALUES (2, 'other', ?)", (now_iso(),))
    with pytest.raises(LookupError):
        runs.continue_in_chat(db, 2, first.id, "t")


def test_browser_arrivals_are_stored_and_read_back(db: sqlite3.Connection) -> None:
    run = new_run(db)
    answer_id = run.answers[0].id
    assert runs.get_answer(db, LOCAL_USER_ID, answer_id).browser_arrivals is None  # type: ignore[union-attr]
    runs.save_browser_arrivals(db, answer_id, [tuple(e) for e in BROWSER_STEADY])  # type: ignore[misc]
    stored = runs.get_answer(db, LOCAL_USER_ID, answer_id)
    assert stored is not None
    assert stored.browser_arrivals == [tuple(entry) for entry in BROWSER_STEADY]


def test_runs_are_listed_newest_first_with_their_answers_and_only_to_their_user(
    db: sqlite3.Connection,
) -> None:
    db.execute("INSERT INTO users (id, name, created_at) VALUES (2, 'other', ?)", (now_iso(),))
    older, newer = new_run(db, "older"), new_run(db, "newer")
    new_run(db, "someone else's", user_id=2)
    listed = runs.list_runs(db, LOCAL_USER_ID)
    assert [run.prompt for run in listed] == ["newer", "older"]
    assert [len(run.answers) for run in listed] == [2, 2]
    assert runs.count_runs(db, LOCAL_USER_ID) == 2
    assert [run.id for run in runs.list_runs(db, LOCAL_USER_ID, limit=1, offset=1)] == [older.id]
    assert runs.get_run(db, 2, newer.id) is None
    assert runs.get_answer(db, 2, newer.answers[0].id) is None


def test_deleting_a_run_deletes_its_answers_only_for_its_owner(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO users (id, name, created_at) VALUES (2, 'other', ?)", (now_iso(),))
    run = new_run(db)
    assert not runs.delete_run(db, 2, run.id)
    assert runs.delete_run(db, LOCAL_USER_ID, run.id)
    assert db.execute("SELECT COUNT(*) FROM compare_answers").fetchone()[0] == 0
    assert not runs.delete_run(db, LOCAL_USER_ID, run.id)


def test_answers_left_open_are_closed_as_interrupted(db: sqlite3.Connection) -> None:
    run = new_run(db)
    finish_answer(db, run.answers[0].id, SERVER)
    assert runs.mark_interrupted(db) == 1
    statuses = [a.status for a in runs.get_run(db, LOCAL_USER_ID, run.id).answers]  # type: ignore[union-attr]
    assert statuses == ["complete", "interrupted"]


def test_numbers_at_both_hops_come_from_the_stored_arrivals(db: sqlite3.Connection) -> None:
    run = new_run(db)
    answer_id = run.answers[0].id
    finish_answer(db, answer_id, SERVER)
    runs.save_browser_arrivals(db, answer_id, [tuple(e) for e in BROWSER_STEADY])  # type: ignore[misc]
    numbers = answer_metrics(runs.get_answer(db, LOCAL_USER_ID, answer_id)).as_dict()  # type: ignore[arg-type]
    assert numbers["server_ttft_ms"] == 100.0
    assert numbers["server_e2e_ms"] == 200.0
    assert numbers["server_itl_p50_ms"] == pytest.approx(20.0)
    assert numbers["server_chunks"] == 6  # the role-only chunk carried no text
    assert numbers["server_output_tokens_per_s"] == 30.0  # 6 tokens / 0.2 s
    assert numbers["server_tpot_ms"] == pytest.approx(20.0)  # (200 - 100) / (6 - 1)
    assert numbers["browser_ttft_ms"] == 105.0
    assert numbers["added_ttft_ms"] == 5.0
    assert numbers["added_delay_p50_ms"] == pytest.approx(5.0)
    assert numbers["chunks_preserved"] is True
    assert numbers["bursty"] is False


def test_a_clumped_browser_stream_is_flagged_bursty(db: sqlite3.Connection) -> None:
    run = new_run(db)
    answer_id = run.answers[0].id
    finish_answer(db, answer_id, SERVER)
    runs.save_browser_arrivals(db, answer_id, [tuple(e) for e in BROWSER_BURSTY])  # type: ignore[misc]
    measured = answer_metrics(runs.get_answer(db, LOCAL_USER_ID, answer_id))  # type: ignore[arg-type]
    assert measured.hops is not None
    assert measured.hops.bursty
    assert measured.as_dict()["added_ttft_ms"] == 45.0


def test_an_answer_without_browser_times_has_server_numbers_only(db: sqlite3.Connection) -> None:
    run = new_run(db)
    finish_answer(db, run.answers[0].id, SERVER)
    numbers = answer_metrics(runs.get_answer(db, LOCAL_USER_ID, run.answers[0].id)).as_dict()  # type: ignore[arg-type]
    assert numbers["server_ttft_ms"] == 100.0
    assert numbers["browser_ttft_ms"] is None
    assert numbers["added_ttft_ms"] is None
    assert numbers["bursty"] is None


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ({"a": 1}, "must be a list"),
        ([[1.0, 1, "a"]], "must be \\[ms, chunk, kind, chars\\]"),
        ([[-1.0, 1, "a", 2]], "before the answer started"),
        ([[float("nan"), 1, "a", 2]], "finite"),
        ([["5", 1, "a", 2]], "finite number"),
        ([[5.0, -1, "a", 2]], "chunk must be a count"),
        ([[5.0, 1, "x", 2]], "kind must be"),
        ([[5.0, 1, "a", True]], "chars must be a count"),
        ([[9.0, 1, "a", 2], [5.0, 2, "a", 2]], "before chunk 1"),
        ([[1.0, 1, "a", 1]] * 40_001, "too many"),
    ],
)
def test_bad_browser_arrivals_are_refused_with_a_reason(raw: object, complaint: str) -> None:
    with pytest.raises(ArrivalsError, match=complaint):
        parse_browser_arrivals(raw)


def test_good_browser_arrivals_are_accepted_as_floats() -> None:
    assert parse_browser_arrivals([[5, 1, "r", 2], [6.5, 1, "a", 1]]) == [
        (5.0, 1, "r", 2),
        (6.5, 1, "a", 1),
    ]


def test_the_timeline_has_a_tick_per_chunk_per_hop_on_the_runs_shared_scale(
    db: sqlite3.Connection,
) -> None:
    run = new_run(db)
    first, second = run.answers
    finish_answer(db, first.id, SERVER)
    runs.save_browser_arrivals(db, first.id, [tuple(e) for e in BROWSER_BURSTY])  # type: ignore[misc]
    finish_answer(db, second.id, [[400.0, 1, "r", 2], [400.0, 1, "a", 2]])
    answers = runs.get_run(db, LOCAL_USER_ID, run.id).answers  # type: ignore[union-attr]
    scale = scale_for(answers)
    assert scale == 400.0
    timeline = build_timeline(answers[0], scale)
    assert [row.label for row in timeline.rows] == ["server", "browser"]
    assert [len(row.ticks) for row in timeline.rows] == [6, 6]
    xs = [tick.x for row in timeline.rows for tick in row.ticks]
    assert all(timeline.plot_left <= x <= timeline.plot_right for x in xs)
    # Half the scale (200 ms) lands half way along the plot.
    last_server_tick = timeline.rows[0].ticks[-1]
    middle = (timeline.plot_left + timeline.plot_right) / 2
    assert last_server_tick.x == pytest.approx(middle, abs=0.01)
    # A chunk holding reasoning and answer is one tick; no browser row without browser times.
    other = build_timeline(answers[1], scale)
    assert [len(row.ticks) for row in other.rows] == [1]


def test_csv_export_has_one_row_per_answer_and_keeps_awkward_prompts_intact(
    db: sqlite3.Connection,
) -> None:
    awkward = 'A "quoted", comma\nand a new line'
    run = new_run(db, awkward)
    finish_answer(db, run.answers[0].id, SERVER)
    runs.save_browser_arrivals(db, run.answers[0].id, [tuple(e) for e in BROWSER_STEADY])  # type: ignore[misc]
    rows = list(csv.DictReader(io.StringIO(runs_csv(runs.list_runs(db, LOCAL_USER_ID)))))
    assert [(row["run_id"], row["engine"], row["status"]) for row in rows] == [
        (str(run.id), "vllm", "complete"),
        (str(run.id), "ollama", "queued"),
    ]
    assert rows[0]["prompt"] == awkward
    assert float(rows[0]["server_ttft_ms"]) == 100.0
    assert float(rows[0]["added_ttft_ms"]) == 5.0
    assert float(rows[0]["engine_eval_tokens_per_s"]) == 12.0  # 6 tokens / 0.5 s
    assert rows[1]["server_ttft_ms"] == ""


def test_csv_export_of_no_runs_is_just_the_header() -> None:
    text = runs_csv([])
    assert text.count("\n") == 1
    assert text.startswith("run_id,created_at,mode,thinking,prompt,position,engine")


def test_json_export_keeps_raw_arrivals_and_the_numbers(db: sqlite3.Connection) -> None:
    run = new_run(db)
    finish_answer(db, run.answers[0].id, SERVER)
    document = json.loads(runs_json(runs.list_runs(db, LOCAL_USER_ID)))
    assert (document["format"], document["version"]) == ("duet-compare-runs", 1)
    [exported] = document["runs"]
    assert exported["id"] == run.id
    first = exported["answers"][0]
    assert first["server_arrivals"] == SERVER
    assert first["browser_arrivals"] is None
    assert first["metrics"]["server_ttft_ms"] == 100.0


# The compare page with engines that are down: input checks and the runs pages.


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    port = closed_port()
    engines = {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    app = create_app(Settings(max_message_chars=100), engines=engines, database=tmp_path / "d.db")
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


FORM = {
    "content": "Hello",
    "engines": ["vllm", "ollama"],
    "mode": "concurrent",
    "temperature": "0",
    "top_p": "1",
    "top_k": "0",
    "max_tokens": "8",
}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"content": "  "}, "The message is empty"),
        ({"engines": []}, "Tick at least one engine"),
        ({"engines": ["vllm", "nope"]}, "Unknown engine &#39;nope&#39;"),
        ({"mode": "parallel"}, "Mode must be one of concurrent, sequential"),
        ({"temperature": "hot"}, "Temperature must be a number"),
    ],
)
def test_the_compare_form_refuses_bad_input_and_stores_nothing(
    client: TestClient, change: dict, complaint: str
) -> None:
    response = client.post("/compare", data={**FORM, **change}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert complaint in response.text
    assert client.app.state.db.execute("SELECT COUNT(*) FROM compare_runs").fetchone()[0] == 0  # type: ignore[attr-defined]


def test_a_run_against_down_engines_ends_failed_with_the_reason(client: TestClient) -> None:
    response = client.post("/compare", data=FORM)
    assert response.status_code == 200
    run_url = response.headers["HX-Push-Url"]
    for answer_id in (1, 2):
        with client.stream("GET", f"/compare/answers/{answer_id}/stream") as stream:
            text = "".join(stream.iter_text())
        assert "event: end" in text
    document = client.get(run_url + ".json").json()
    [run] = document["runs"]
    assert [a["status"] for a in run["answers"]] == ["failed", "failed"]
    assert all("ConnectError" in a["error"] for a in run["answers"])
    page = client.get("/runs")
    assert page.status_code == 200
    assert f'href="{run_url}"' in page.text
    assert client.get("/runs/999").status_code == 404
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for engine in ("vllm", "ollama"):
        assert (
            f'duet_engine_requests_total{{engine="{engine}",outcome="failed"}} 1.0' in metrics.text
        )
    # No chunk ever arrived: no first-token or gap observations.
    assert 'duet_time_to_first_token_seconds_count{engine="vllm"}' not in metrics.text


def test_browser_times_are_refused_when_malformed(client: TestClient) -> None:
    client.post("/compare", data=FORM)
    assert client.post("/compare/answers/1/browser", content=b"not json").status_code == 422
    bad = client.post("/compare/answers/1/browser", json={"arrivals": [[-5, 1, "a", 1]]})
    assert bad.status_code == 422
    assert "before the answer started" in bad.text
    assert client.post("/compare/answers/99/browser", json={"arrivals": []}).status_code == 404


def test_the_wide_pages_mark_where_you_are(client: TestClient) -> None:
    run_url = client.post("/compare", data=FORM).headers["HX-Push-Url"]
    for path, current in (("/compare", "/compare"), ("/runs", "/runs"), (run_url, "/runs")):
        page = client.get(path)
        assert page.status_code == 200
        marked = re.findall(r'<a href="([^"]+)" aria-current="page">', page.text)
        assert marked == [current], path
