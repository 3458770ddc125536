"""The search indexes hold every message but the answers still being written (m014): an answer
goes in when it ends, with the text it ended with, and the indexes stay consistent with the
messages table through every change a conversation goes through.

Consistency is SQLite's own verdict: FTS5's `integrity-check` with rank 1 compares an external
content index with the rows of its table (https://sqlite.org/fts5.html, "The 'integrity-check'
Command"), so it passes only while no row is streaming.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from duet.store import conversations, messages, open_database, search_index
from duet.store.db import connect
from duet.store.migrations import MIGRATIONS, migrate
from duet.store.users import LOCAL_USER_ID

INDEXES = ("messages_fts", "messages_trigram")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    database = open_database(tmp_path / "duet.sqlite3")
    yield database
    database.close()


def found(db: sqlite3.Connection, text: str) -> list[int]:
    return [
        hit.conversation.id for hit in conversations.search_conversations(db, LOCAL_USER_ID, text)
    ]


def indexed_rows(db: sqlite3.Connection, index: str) -> int:
    # The index's own count of the documents it holds (its 'docsize' shadow table).
    return int(db.execute(f"SELECT count(*) FROM {index}_docsize").fetchone()[0])


def assert_consistent(db: sqlite3.Connection) -> None:
    for index in INDEXES:
        db.execute(f"INSERT INTO {index} ({index}, rank) VALUES ('integrity-check', 1)")


def streaming_answer(db: sqlite3.Connection, question: str) -> tuple[int, int]:
    conversation = conversations.create_conversation(db, LOCAL_USER_ID, question)
    messages.add_user_message(db, conversation.id, question)
    answer = messages.start_assistant_message(
        db, conversation.id, engine="vllm", model="qwen3", thinking=True, parameters={}
    )
    return conversation.id, answer.id


def test_an_answer_is_found_once_it_ends_with_the_text_it_ended_with(
    db: sqlite3.Connection,
) -> None:
    conversation_id, answer_id = streaming_answer(db, "Tell me about llamas")
    assert found(db, "llamas") == [conversation_id]  # the question is in at once
    for partial in ("Alpacas", "Alpacas graze on the 山顶"):
        messages.save_assistant(
            db, answer_id, messages.AnswerRecord("streaming", content=partial, reasoning="Wool")
        )
        assert found(db, "alpacas") == found(db, "wool") == found(db, "山顶") == []
    assert [indexed_rows(db, index) for index in INDEXES] == [1, 1]

    ended = messages.AnswerRecord("complete", content="Vicuñas live on 山顶上", reasoning="Wool")
    messages.save_assistant(db, answer_id, ended)
    for text in ("vicunas", "wool", "山顶", "山顶上"):
        assert found(db, text) == [conversation_id], text
    assert found(db, "alpacas") == []
    assert_consistent(db)

    # Edited and deleted as before: the indexes follow.
    messages.update_user_message(db, answer_id - 1, "Tell me about guanacos")
    assert (found(db, "guanacos"), found(db, "llamas")) == ([conversation_id], [])
    assert_consistent(db)
    conversations.delete_conversation(db, LOCAL_USER_ID, conversation_id)
    assert [indexed_rows(db, index) for index in INDEXES] == [0, 0]
    assert_consistent(db)


@pytest.mark.parametrize("status", ["stopped", "failed", "interrupted"])
def test_an_answer_that_ends_any_other_way_is_indexed_too(
    db: sqlite3.Connection, status: messages.Status
) -> None:
    conversation_id, answer_id = streaming_answer(db, "Tell me a story")
    messages.save_assistant(db, answer_id, messages.AnswerRecord("streaming", content="Once"))
    messages.save_assistant(db, answer_id, messages.AnswerRecord(status, content="Once upon"))
    assert found(db, "upon") == [conversation_id]
    assert_consistent(db)


def test_the_migration_takes_streaming_answers_out_of_the_indexes(tmp_path: Path) -> None:
    """A database from before m014, with an answer left streaming (a server that stopped
    mid-answer) and ended ones, comes out indexed as m014 keeps it."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    names = [migration.__name__ for migration in MIGRATIONS]
    at = names.index("m014_index_answers_once_ended")
    before, after = MIGRATIONS[:at], names[at + 1 :]
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for migration in before:
        migration(db)
        db.execute("INSERT INTO _migrations VALUES (?, 'before m014')", (migration.__name__,))
    ended_id, ended_answer = streaming_answer(db, "Ended question")
    messages.save_assistant(db, ended_answer, messages.AnswerRecord("complete", content="Zebras"))
    left_id, left_answer = streaming_answer(db, "Left question")
    messages.save_assistant(db, left_answer, messages.AnswerRecord("streaming", content="Okapis"))
    # Before: a streaming answer was indexed (asked of the index itself, as today's search
    # needs columns of later migrations, such as m013's deleted_at).
    before_m014 = db.execute("SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'okapis'")
    assert [row[0] for row in before_m014] == [left_answer]
    db.close()

    db = connect(path)
    try:
        assert migrate(db) == ["m014_index_answers_once_ended", *after]
        assert found(db, "zebras") == [ended_id]
        assert found(db, "okapis") == []
        assert set(found(db, "question")) == {ended_id, left_id}
    finally:
        db.close()
    db = open_database(path)  # closes out the answer left streaming, which indexes it
    try:
        assert messages.require_message(db, left_answer).status == "interrupted"
        assert found(db, "okapis") == [left_id]
        assert_consistent(db)
    finally:
        db.close()


def backlog(db: sqlite3.Connection) -> list[int]:
    return [row[0] for row in db.execute("SELECT message_id FROM search_backlog ORDER BY 1")]


def asked(db: sqlite3.Connection, question: str) -> int:
    """A conversation with a user's message and its ended answer (integrity-check passes only
    while no answer is streaming); the conversation's id."""
    conversation_id, answer_id = streaming_answer(db, question)
    messages.save_assistant(db, answer_id, messages.AnswerRecord("complete", content="Noted."))
    return conversation_id


def test_a_new_message_waits_in_the_backlog_and_every_change_to_it_is_kept(
    db: sqlite3.Connection,
) -> None:
    """A user's message is stored without its index rows (they are written once the answer's
    engine request is out, m015); whatever happens to it before then, the indexes come out
    as SQLite's integrity check expects, and a search never misses it."""
    kept = asked(db, "Tell me about tapirs")
    edited = asked(db, "Tell me about capybaras")
    dropped = asked(db, "Tell me about quokkas")
    users = [row[0] for row in db.execute("SELECT id FROM messages WHERE role = 'user'")]
    assert backlog(db) == users
    # Only the three answers, indexed as they ended.
    assert [indexed_rows(db, index) for index in INDEXES] == [3, 3]

    messages.update_user_message(db, users[1], "Tell me about wombats")
    conversations.delete_conversation(db, LOCAL_USER_ID, dropped)
    assert backlog(db) == users[:2]
    assert search_index.catch_up(db) == 2
    assert backlog(db) == []
    assert [indexed_rows(db, index) for index in INDEXES] == [4, 4]
    assert_consistent(db)
    assert found(db, "tapirs") == [kept]
    assert (found(db, "wombats"), found(db, "capybaras"), found(db, "quokkas")) == (
        [edited], [], []
    )  # fmt: skip

    # Once indexed, a message follows its changes at once, as before.
    messages.update_user_message(db, users[0], "Tell me about okapis")
    assert backlog(db) == []
    assert_consistent(db)
    assert (found(db, "okapis"), found(db, "tapirs")) == ([kept], [])


def test_a_search_catches_the_backlog_up_first(db: sqlite3.Connection) -> None:
    conversation_id = asked(db, "Where do pangolins sleep")
    assert backlog(db) != []
    assert found(db, "pangolins") == [conversation_id]
    assert found(db, "穿山甲") == []  # the substring index is caught up as well
    assert backlog(db) == []
    assert_consistent(db)


def test_opening_the_database_catches_the_backlog_up(tmp_path: Path) -> None:
    path = tmp_path / "duet.sqlite3"
    db = open_database(path)
    asked(db, "Left in the backlog")
    assert backlog(db) != []
    db.close()
    db = open_database(path)
    try:
        assert backlog(db) == []
        assert [indexed_rows(db, index) for index in INDEXES] == [2, 2]
        assert_consistent(db)
    finally:
        db.close()
