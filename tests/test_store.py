"""The SQLite store: migrations, conversations, messages, search, interrupted answers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from duet.store import conversations, messages, migrations, open_database
from duet.store.db import connect
from duet.store.messages import AnswerRecord, Arrival
from duet.store.users import LOCAL_USER_ID


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    return open_database(tmp_path / "duet.sqlite3")


def add_conversation(db: sqlite3.Connection, *texts: str, user_id: int = LOCAL_USER_ID) -> int:
    conversation = conversations.create_conversation(db, user_id, texts[0][:20])
    for index, text in enumerate(texts):
        if index % 2 == 0:
            messages.add_user_message(db, conversation.id, text)
        else:
            answer = messages.start_assistant_message(
                db, conversation.id, engine="vllm", model="m", thinking=False, parameters={}
            )
            messages.save_assistant(db, answer.id, AnswerRecord("complete", content=text))
    return conversation.id


def test_migrations_apply_once_and_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "duet.sqlite3"
    first = connect(path)
    applied = migrations.migrate(first)
    assert applied == [m.__name__ for m in migrations.MIGRATIONS]
    assert migrations.migrate(first) == []
    first.close()
    # Opening again (as every app start does) applies nothing and keeps the data.
    again = open_database(path)
    recorded = [row[0] for row in again.execute("SELECT name FROM _migrations ORDER BY name")]
    assert recorded == sorted(applied)
    assert again.execute("SELECT name FROM users WHERE id = ?", (LOCAL_USER_ID,)).fetchone()[0] == (
        "local"
    )


def test_failing_migration_leaves_no_trace(db: sqlite3.Connection, monkeypatch) -> None:
    def m999_broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m999_broken])
    with pytest.raises(RuntimeError):
        migrations.migrate(db)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables
    assert db.execute("SELECT count(*) FROM _migrations WHERE name = 'm999_broken'").fetchone()[
        0
    ] == (0)


def test_database_uses_wal_and_foreign_keys(db: sqlite3.Connection) -> None:
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_conversation_crud_and_order(db: sqlite3.Connection) -> None:
    older = add_conversation(db, "first question")
    newer = add_conversation(db, "second question")
    listed = [c.id for c in conversations.list_conversations(db, LOCAL_USER_ID)]
    assert listed.index(newer) < listed.index(older)

    conversations.touch_conversation(db, older)
    assert conversations.list_conversations(db, LOCAL_USER_ID)[0].id == older

    assert conversations.rename_conversation(db, LOCAL_USER_ID, older, "Renamed")
    assert conversations.get_conversation(db, LOCAL_USER_ID, older).title == "Renamed"

    assert conversations.delete_conversation(db, LOCAL_USER_ID, older)
    assert conversations.get_conversation(db, LOCAL_USER_ID, older) is None
    assert messages.list_messages(db, older) == []
    assert not conversations.delete_conversation(db, LOCAL_USER_ID, older)


def test_conversations_are_scoped_to_their_user(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO users (id, name, created_at) VALUES (2, 'other', 'now')")
    theirs = add_conversation(db, "private question about zebras", user_id=2)
    assert conversations.get_conversation(db, LOCAL_USER_ID, theirs) is None
    assert not conversations.rename_conversation(db, LOCAL_USER_ID, theirs, "mine now")
    assert not conversations.delete_conversation(db, LOCAL_USER_ID, theirs)
    assert conversations.search_conversations(db, LOCAL_USER_ID, "zebras") == []
    assert [h.conversation.id for h in conversations.search_conversations(db, 2, "zebras")] == [
        theirs
    ]


def test_assistant_message_lifecycle(db: sqlite3.Connection) -> None:
    conversation_id = add_conversation(db, "hello")
    started = messages.start_assistant_message(
        db,
        conversation_id,
        engine="ollama",
        model="qwen3-duet",
        thinking=True,
        parameters={"temperature": 0.6},
    )
    assert started.status == "streaming"
    assert started.parameters == {"temperature": 0.6}

    arrivals = (Arrival(12.5, 0, "r", 8), Arrival(30.0, 1, "a", 3))
    partial = AnswerRecord(
        "streaming", content="Hel", reasoning="thinking", ttft_ms=12.5, arrivals=arrivals
    )
    messages.save_assistant(db, started.id, partial)
    saved = messages.require_message(db, started.id)
    assert (saved.content, saved.reasoning, saved.status) == ("Hel", "thinking", "streaming")
    assert saved.arrivals == list(arrivals)
    assert saved.arrivals[1].kind == "a" and saved.arrivals[1].chars == 3

    final = AnswerRecord(
        "complete",
        content="Hello",
        completion_tokens=11,
        ttft_ms=100.0,
        total_ms=1100.0,
        engine_timings={"eval_duration": 0.9},
    )
    messages.save_assistant(db, started.id, final)
    done = messages.require_message(db, started.id)
    assert done.status == "complete"
    assert done.engine_timings == {"eval_duration": 0.9}
    assert done.tokens_per_second == pytest.approx(10 / 1.0)


def test_leftover_streaming_rows_become_interrupted_with_their_text(tmp_path: Path) -> None:
    path = tmp_path / "duet.sqlite3"
    db = open_database(path)
    conversation_id = add_conversation(db, "hello")
    answer = messages.start_assistant_message(
        db, conversation_id, engine="vllm", model="m", thinking=False, parameters={}
    )
    messages.save_assistant(db, answer.id, AnswerRecord("streaming", content="partial"))
    db.close()  # the server died here

    reopened = open_database(path)
    stored = messages.require_message(reopened, answer.id)
    assert stored.status == "interrupted"
    assert stored.content == "partial"
    assert stored.error
    assert messages.mark_interrupted(reopened) == 0


def test_search_finds_words_prefixes_and_marks_them(db: sqlite3.Connection) -> None:
    about_cats = add_conversation(db, "Tell me about cats", "Cats are small carnivores.")
    add_conversation(db, "Tell me about dogs", "Dogs are loyal.")
    hits = conversations.search_conversations(db, LOCAL_USER_ID, "carniv")
    assert [hit.conversation.id for hit in hits] == [about_cats]
    snippet = hits[0].snippet
    assert conversations.MATCH_START + "carnivores" + conversations.MATCH_END in snippet
    # Every word must match.
    assert conversations.search_conversations(db, LOCAL_USER_ID, "dogs carnivores") == []
    # One hit per conversation even when several of its messages match.
    assert len(conversations.search_conversations(db, LOCAL_USER_ID, "cats")) == 1


@pytest.mark.parametrize("text", ['"', "AND", "cats OR", "NEAR(", "a:b", "*", "-x", "  "])
def test_search_treats_query_syntax_as_text(db: sqlite3.Connection, text: str) -> None:
    add_conversation(db, "Tell me about cats")
    # Must not raise sqlite3.OperationalError (an FTS5 syntax error).
    assert isinstance(conversations.search_conversations(db, LOCAL_USER_ID, text), list)


def test_search_follows_edits_and_deletes(db: sqlite3.Connection) -> None:
    conversation_id = add_conversation(db, "original wording")
    message = messages.list_messages(db, conversation_id)[0]
    messages.update_user_message(db, message.id, "replacement phrasing")
    assert conversations.search_conversations(db, LOCAL_USER_ID, "original") == []
    assert len(conversations.search_conversations(db, LOCAL_USER_ID, "phrasing")) == 1
    messages.delete_messages_from(db, conversation_id, message.id)
    assert conversations.search_conversations(db, LOCAL_USER_ID, "phrasing") == []
    # The index agrees with the table (FTS5's own consistency check).
    db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")


def test_search_covers_reasoning(db: sqlite3.Connection) -> None:
    conversation_id = add_conversation(db, "question")
    answer = messages.start_assistant_message(
        db, conversation_id, engine="vllm", model="m", thinking=True, parameters={}
    )
    messages.save_assistant(
        db, answer.id, AnswerRecord("complete", content="42", reasoning="ponder deeply")
    )
    assert len(conversations.search_conversations(db, LOCAL_USER_ID, "ponder")) == 1


def test_fork_copies_messages_before_the_edited_one(db: sqlite3.Connection) -> None:
    source = add_conversation(db, "one", "answer one", "two", "answer two")
    history = messages.list_messages(db, source)
    fork = conversations.fork_conversation(db, LOCAL_USER_ID, source, history[2].id)
    copied = messages.list_messages(db, fork.id)
    assert [m.content for m in copied] == ["one", "answer one"]
    assert [m.content for m in messages.list_messages(db, source)] == [
        "one",
        "answer one",
        "two",
        "answer two",
    ]
    assert fork.title.endswith("(edited)")


def test_delete_messages_from_keeps_earlier_ones(db: sqlite3.Connection) -> None:
    conversation_id = add_conversation(db, "one", "answer one", "two", "answer two")
    history = messages.list_messages(db, conversation_id)
    assert messages.delete_messages_from(db, conversation_id, history[2].id) == 2
    assert [m.content for m in messages.list_messages(db, conversation_id)] == [
        "one",
        "answer one",
    ]


def test_title_from_text_is_one_short_line() -> None:
    assert conversations.title_from_text("  hello\n\nworld ") == "hello world"
    long_title = conversations.title_from_text("word " * 40)
    assert len(long_title) <= 60
    assert long_title.endswith("…")
