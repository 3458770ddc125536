"""Queries about conversations: plain functions over a connection, scoped to a user."""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from duet.markdown import plain_text
from duet.store import search_index
from duet.store.db import now_iso, transaction

TITLE_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    user_id: int
    title: str
    system_prompt: str
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class SearchHit:
    conversation: Conversation
    # A piece of the matching message with the matched words between MATCH_START and MATCH_END,
    # so the view can escape the text first and mark the words after.
    snippet: str


MATCH_START = "\x02"
MATCH_END = "\x03"


def from_row(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        user_id=row["user_id"],
        title=row["title"],
        system_prompt=row["system_prompt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def title_from_text(text: str) -> str:
    """A first title: the start of the first message, on one line."""
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= 60 else one_line[:59].rstrip() + "…"


def create_conversation(
    db: sqlite3.Connection, user_id: int, title: str, system_prompt: str = ""
) -> Conversation:
    stamp = now_iso()
    row = db.execute(
        "INSERT INTO conversations (user_id, title, system_prompt, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING *",
        (user_id, title, system_prompt, stamp, stamp),
    ).fetchone()
    return from_row(row)


def get_conversation(
    db: sqlite3.Connection, user_id: int, conversation_id: int
) -> Conversation | None:
    row = db.execute(
        "SELECT * FROM conversations WHERE id = ? AND user_id = ? AND deleted_at IS NULL",
        (conversation_id, user_id),
    ).fetchone()
    return None if row is None else from_row(row)


def list_conversations(
    db: sqlite3.Connection, user_id: int, limit: int = 200
) -> list[Conversation]:
    """The user's conversations for the sidebar, latest first. (Compare answers are not among
    them: they belong to their run until the user continues one, store/runs.py.)"""
    rows = db.execute(
        "SELECT * FROM conversations WHERE user_id = ? AND deleted_at IS NULL"
        " ORDER BY updated_at DESC, id DESC LIMIT ?",
        (user_id, limit),
    )
    return [from_row(row) for row in rows]


def rename_conversation(
    db: sqlite3.Connection, user_id: int, conversation_id: int, title: str
) -> bool:
    cursor = db.execute(
        "UPDATE conversations SET title = ? WHERE id = ? AND user_id = ?",
        (title, conversation_id, user_id),
    )
    return cursor.rowcount == 1


def set_system_prompt(db: sqlite3.Connection, conversation_id: int, system_prompt: str) -> None:
    db.execute(
        "UPDATE conversations SET system_prompt = ? WHERE id = ?", (system_prompt, conversation_id)
    )


def touch_conversation(db: sqlite3.Connection, conversation_id: int) -> None:
    """Move a conversation to the top of the sidebar."""
    db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now_iso(), conversation_id))


def answered_with(db: sqlite3.Connection, conversation_id: int, system_prompt: str) -> None:
    """A new answer was started with this system prompt: keep it, and move the conversation to
    the top of the sidebar."""
    db.execute(
        "UPDATE conversations SET system_prompt = ?, updated_at = ? WHERE id = ?",
        (system_prompt, now_iso(), conversation_id),
    )


def delete_conversation(db: sqlite3.Connection, user_id: int, conversation_id: int) -> bool:
    # Messages go with it (ON DELETE CASCADE), and their FTS rows with them (trigger).
    cursor = db.execute(
        "DELETE FROM conversations WHERE id = ? AND user_id = ?", (conversation_id, user_id)
    )
    return cursor.rowcount == 1


def fork_conversation(
    db: sqlite3.Connection, user_id: int, conversation_id: int, before_message_id: int
) -> Conversation:
    """A new conversation holding copies of the messages before `before_message_id`.

    Editing an earlier message resends from a fork, so the original conversation, and every later
    message the user wrote in it, stays as it was.
    """
    source = get_conversation(db, user_id, conversation_id)
    if source is None:
        raise LookupError(f"no conversation {conversation_id}")
    with transaction(db):
        fork = create_conversation(db, user_id, f"{source.title} (edited)", source.system_prompt)
        db.execute(
            """
            INSERT INTO messages (
                conversation_id, role, content, reasoning, engine, model, thinking, parameters,
                status, error, finish_reason, prompt_tokens, completion_tokens, ttft_ms, ttfa_ms,
                total_ms, engine_timings, arrivals, created_at, updated_at
            )
            SELECT
                ?, role, content, reasoning, engine, model, thinking, parameters,
                status, error, finish_reason, prompt_tokens, completion_tokens, ttft_ms, ttfa_ms,
                total_ms, engine_timings, arrivals, created_at, updated_at
            FROM messages WHERE conversation_id = ? AND id < ? ORDER BY id
            """,
            (fork.id, conversation_id, before_message_id),
        )
    return fork


def query_words(text: str) -> list[str]:
    """The words a person typed. Control characters and lone surrogates separate words:
    SQLite reads a NUL as the end of the query (an unterminated string), a surrogate has no
    UTF-8 at all, and FTS5's tokenizer splits words at control characters in the indexed text
    too."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in text).split()


def fts_query(text: str) -> str:
    """Turn what a person typed into an FTS5 query for the word index: every word must appear,
    the last one may be the start of a word. Each word is quoted, so FTS5 operators and stray
    quotes are plain text."""
    words = query_words(text)
    if not words:
        return ""
    quoted = ['"' + word.replace('"', '""') + '"' for word in words]
    quoted[-1] += "*"
    return " ".join(quoted)


# Scripts written without spaces between words (Chinese, Japanese kana, Korean, and their
# full-width punctuation): the word index takes a whole run of them for one word, so a query
# in them is looked up as a substring instead.
UNSPACED = re.compile(
    "[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\uff00-\uffef\U00020000-\U0003134f]"
)
TRIGRAM = 3  # the substring index's tokens: shorter words are looked up without it
SNIPPET_BEFORE, SNIPPET_AFTER = 40, 90  # characters of context around the first match


def search_conversations(
    db: sqlite3.Connection, user_id: int, text: str, limit: int = 50
) -> list[SearchHit]:
    """Conversations with a message matching `text`, best match first, one hit per conversation.

    Words in spaced scripts match whole words, the last one as a prefix (the unicode61 word
    index, m004); a query with Chinese, Japanese or Korean in it matches substrings (the
    trigram index, m009, for words of three characters or more, a scan for shorter ones). An
    answer is found once it has ended, with the text it ended with (m014). The snippet is the
    message's text as it reads, without Markdown syntax."""
    # Messages stored since the last catch-up are searchable too.
    search_index.catch_up(db)
    words = query_words(text)
    if not words:
        return []
    if any(UNSPACED.search(word) for word in words):
        rows = _substring_matches(db, user_id, words, limit * 10)
        marks = _substring_marks(words)
    else:
        rows = _word_matches(db, user_id, fts_query(text), limit * 10)
        marks = _word_marks(words)
    hits: dict[int, SearchHit] = {}
    for row in rows:
        if row["id"] not in hits:
            snippet = make_snippet(row["hit_content"], row["hit_reasoning"], marks)
            hits[row["id"]] = SearchHit(conversation=from_row(row), snippet=snippet)
    return list(hits.values())[:limit]


HIT_COLUMNS = (
    "conversations.*, messages.content AS hit_content, messages.reasoning AS hit_reasoning"
)


def _word_matches(
    db: sqlite3.Connection, user_id: int, query: str, limit: int
) -> list[sqlite3.Row]:
    return db.execute(
        f"""
        SELECT {HIT_COLUMNS}
        FROM messages_fts
        JOIN messages ON messages.id = messages_fts.rowid
        JOIN conversations ON conversations.id = messages.conversation_id
        WHERE messages_fts MATCH ? AND conversations.user_id = ?
            AND conversations.deleted_at IS NULL
        ORDER BY messages_fts.rank
        LIMIT ?
        """,
        # Matches are messages; several can come from one conversation.
        (query, user_id, limit),
    ).fetchall()


def _substring_matches(
    db: sqlite3.Connection, user_id: int, words: list[str], limit: int
) -> list[sqlite3.Row]:
    long_words = [word for word in words if len(word) >= TRIGRAM]
    short_words = [word for word in words if len(word) < TRIGRAM]
    # As the indexes hold them (m014): an answer is found once it has ended.
    conditions = [
        "conversations.user_id = ?",
        "conversations.deleted_at IS NULL",
        "messages.status != 'streaming'",
    ]
    parameters: list[object] = [user_id]
    if long_words:
        conditions.append(
            "messages.id IN (SELECT rowid FROM messages_trigram WHERE messages_trigram MATCH ?)"
        )
        parameters.append(" ".join('"' + word.replace('"', '""') + '"' for word in long_words))
    for word in short_words:
        # lower() folds ASCII only, as the trigram index does for the longer words.
        conditions.append(
            "(instr(lower(messages.content), lower(?)) > 0"
            " OR instr(lower(messages.reasoning), lower(?)) > 0)"
        )
        parameters += [word, word]
    parameters.append(limit)
    return db.execute(
        f"""
        SELECT {HIT_COLUMNS}
        FROM messages
        JOIN conversations ON conversations.id = messages.conversation_id
        WHERE {" AND ".join(conditions)}
        ORDER BY messages.id DESC
        LIMIT ?
        """,
        parameters,
    ).fetchall()


Marks = Callable[[str], list[tuple[int, int]]]
"""Where a query matches in a text: sorted, non-overlapping (start, end) spans."""


def _fold(word: str) -> str:
    # What unicode61 remove_diacritics compares: case and accents aside.
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _word_marks(words: list[str]) -> Marks:
    folded = [_fold(word) for word in words]
    whole, prefix = set(folded[:-1]), folded[-1]

    def marks(text: str) -> list[tuple[int, int]]:
        spans = []
        for found in re.finditer(r"[^\W_]+", text):
            token = _fold(found.group())
            if token in whole or token.startswith(prefix):
                spans.append(found.span())
        return spans

    return marks


def _substring_marks(words: list[str]) -> Marks:
    pattern = re.compile("|".join(re.escape(word) for word in words), re.IGNORECASE)
    return lambda text: [found.span() for found in pattern.finditer(text)]


def make_snippet(content: str, reasoning: str, marks: Marks) -> str:
    """A piece of the message as it reads (Markdown syntax gone) around its first match, the
    matches between MATCH_START and MATCH_END; the answer's text first, then its reasoning."""
    texts = [plain_text(content), plain_text(reasoning)]
    for text in texts:
        spans = marks(text)
        if spans:
            break
    else:
        text, spans = texts[0] or texts[1], []
    first = spans[0][0] if spans else 0
    start, end = max(0, first - SNIPPET_BEFORE), min(len(text), first + SNIPPET_AFTER)
    if start > 0 and " " in text[start:first]:
        start = text.index(" ", start) + 1  # begin at a word, not inside one
    if end < len(text) and " " in text[first:end]:
        end = text.rindex(" ", first, end)
    pieces, at = [], start
    for span_start, span_end in spans:
        if span_start < start or span_end > end:
            continue
        pieces += [text[at:span_start], MATCH_START, text[span_start:span_end], MATCH_END]
        at = span_end
    pieces.append(text[at:end])
    return ("…" if start > 0 else "") + "".join(pieces) + ("…" if end < len(text) else "")
