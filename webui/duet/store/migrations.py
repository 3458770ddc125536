"""The SQLite schema, as an ordered list of plain functions.

Each migration runs once and is recorded by name in `_migrations`, so `migrate()` can run on every
start. Never edit a migration that has shipped: add a new one below it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from duet.store.db import now_iso, transaction
from duet.store.users import LOCAL_USER_ID

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = []


def migration(function: Migration) -> Migration:
    MIGRATIONS.append(function)
    return function


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    applied = []
    for function in MIGRATIONS:
        if function.__name__ in done:
            continue
        # One transaction per migration: a failure leaves the schema at the previous step.
        with transaction(db):
            function(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (function.__name__, now_iso()),
            )
        applied.append(function.__name__)
    return applied


@migration
def m001_users(db: sqlite3.Connection) -> None:
    # Roles and API keys arrive with accounts; until then every conversation belongs to the
    # single local user created here.
    db.execute(
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        "INSERT INTO users (id, name, created_at) VALUES (?, 'local', ?)",
        (LOCAL_USER_ID, now_iso()),
    )


@migration
def m002_conversations(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            title TEXT NOT NULL DEFAULT '',
            system_prompt TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX conversations_by_user ON conversations (user_id, updated_at)")


@migration
def m003_messages(db: sqlite3.Connection) -> None:
    # AUTOINCREMENT (here and for conversations) so an id is never reused after a delete: a
    # browser tab or a stream URL that still holds an old id must not reach a new message.
    # Timings are milliseconds from the moment the request went to the engine: ttft to the first
    # streamed text of any kind, ttfa to the first answer text (after any reasoning), total to the
    # end. `arrivals` is a JSON list with one [ms, chunk, kind, chars] entry per stream event,
    # kind "r" (reasoning) or "a" (answer): the raw material for the latency timeline.
    db.execute(
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL DEFAULT '',
            reasoning TEXT NOT NULL DEFAULT '',
            engine TEXT,
            model TEXT,
            thinking INTEGER,
            parameters TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'complete' CHECK (
                status IN ('streaming', 'complete', 'stopped', 'failed', 'interrupted')
            ),
            error TEXT,
            finish_reason TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            ttft_ms REAL,
            ttfa_ms REAL,
            total_ms REAL,
            engine_timings TEXT NOT NULL DEFAULT '{}',
            arrivals TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX messages_by_conversation ON messages (conversation_id, id)")
    db.execute("CREATE INDEX messages_streaming ON messages (status) WHERE status = 'streaming'")


@migration
def m004_messages_fts(db: sqlite3.Connection) -> None:
    # An external-content FTS5 index over answer and reasoning text, kept in step by triggers.
    # The update trigger fires only when text changes, not on timing or status updates.
    db.execute(
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, reasoning, content='messages', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        )
        """
    )
    triggers = (
        """
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, content, reasoning)
            VALUES (new.id, new.content, new.reasoning);
        END
        """,
        """
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content, reasoning)
            VALUES ('delete', old.id, old.content, old.reasoning);
        END
        """,
        """
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, reasoning ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content, reasoning)
            VALUES ('delete', old.id, old.content, old.reasoning);
            INSERT INTO messages_fts (rowid, content, reasoning)
            VALUES (new.id, new.content, new.reasoning);
        END
        """,
    )
    # Not executescript(): it would commit in the middle of the migration's transaction.
    for trigger in triggers:
        db.execute(trigger)


@migration
def m005_compare_runs(db: sqlite3.Connection) -> None:
    # A compare run: one prompt sent to several engines, concurrently or one after the other.
    # Each answer is also an ordinary assistant message (in a conversation of its own, so it can
    # be continued in the chat); `message_id` links to it. The timings are copied here when the
    # answer ends, so deleting that conversation never loses a run's measurements.
    # Arrival lists are JSON lists of `messages.Arrival` ([ms, chunk, kind, chars] per event):
    # `server_arrivals` in ms since Duet sent the request to the engine, `browser_arrivals` in ms
    # since the browser's start of this answer (see docs/metrics.md, "The compare view").
    # `started_ms` is when this answer's engine request went out, in ms after the run was
    # received: 0-ish for concurrent runs, after the previous answer for sequential ones.
    db.execute(
        """
        CREATE TABLE compare_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            prompt TEXT NOT NULL,
            system_prompt TEXT NOT NULL DEFAULT '',
            mode TEXT NOT NULL CHECK (mode IN ('concurrent', 'sequential')),
            thinking INTEGER NOT NULL,
            parameters TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX compare_runs_by_user ON compare_runs (user_id, id)")
    db.execute(
        """
        CREATE TABLE compare_answers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES compare_runs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            engine TEXT NOT NULL,
            model TEXT NOT NULL,
            conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
            message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (
                status IN ('queued', 'streaming', 'complete', 'stopped', 'failed', 'interrupted')
            ),
            error TEXT,
            started_ms REAL,
            prompt_tokens INTEGER,
            output_tokens INTEGER,
            engine_timings TEXT NOT NULL DEFAULT '{}',
            server_arrivals TEXT NOT NULL DEFAULT '[]',
            browser_arrivals TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (run_id, position)
        )
        """
    )


@migration
def m006_accounts(db: sqlite3.Connection) -> None:
    # Team mode. A user signs in with a name and a password (an Argon2id hash); `role` is
    # admin, user or pending (signed up, waiting for an admin's approval). The local user of
    # a single-user database has no password: the first admin made becomes that row, so every
    # conversation and run it holds belongs to them (`users.claim_local_user`).
    for column in (
        "password_hash TEXT",
        "role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user', 'pending'))",
        "disabled INTEGER NOT NULL DEFAULT 0",
        "must_change_password INTEGER NOT NULL DEFAULT 0",
    ):
        db.execute(f"ALTER TABLE users ADD COLUMN {column}")
    db.execute("UPDATE users SET role = 'admin' WHERE id = ?", (LOCAL_USER_ID,))
    # Sessions live here, not in a signed cookie, so that signing out, a password change or a
    # disabled account ends them at once. Only the token's SHA-256 is kept: the database
    # alone cannot be used to sign in.
    db.execute(
        """
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            user_agent TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute("CREATE INDEX sessions_by_user ON sessions (user_id)")
    # Settings an admin changes at run time (the signup policy), and secrets made on first
    # start (kept hashed where a hash is enough).
    db.execute("CREATE TABLE instance (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migration
def m007_invites_and_shares(db: sqlite3.Connection) -> None:
    # An invite is a link an admin sends to one person: it makes an account with `role` once,
    # until `expires_at`. Only the token's SHA-256 is kept, as for sessions.
    db.execute(
        """
        CREATE TABLE invites (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            token_hash TEXT NOT NULL UNIQUE,
            created_by INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT,
            used_by INTEGER REFERENCES users(id) ON DELETE SET NULL
        )
        """
    )
    # A share shows one conversation or compare run, read-only, to signed-in teammates who
    # have its link, until its owner revokes it. The token is the link, shown to the owner
    # again whenever they look, so it is kept as it is.
    db.execute(
        """
        CREATE TABLE shares (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            token TEXT NOT NULL UNIQUE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('conversation', 'run')),
            object_id INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX shares_by_object ON shares (kind, object_id)")


@migration
def m008_api_keys_limits_usage(db: sqlite3.Connection) -> None:
    # API keys for Duet's OpenAI-compatible /v1. A key is a random token shown to its owner
    # once; only its SHA-256 is kept (the database alone cannot be used to call /v1), with the
    # first characters of the token for the owner to recognise it by. `allowed_models` is a
    # JSON list of /v1 model names (e.g. "vllm/qwen3"), NULL for every model. `keep_history`
    # is the owner's choice to keep this key's conversations in their history; without it
    # only usage counts are kept, never the prompt text.
    db.execute(
        """
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            key_prefix TEXT NOT NULL,
            allowed_models TEXT,
            keep_history INTEGER NOT NULL DEFAULT 0 CHECK (keep_history IN (0, 1)),
            created_at TEXT NOT NULL,
            expires_at TEXT,
            last_used_at TEXT,
            revoked_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX api_keys_by_user ON api_keys (user_id, id)")
    # Limits per user, for /v1 and the web UI alike. The row whose user_id is NULL holds the
    # admin-set defaults (at most one such row); a user's own row overrides them. A NULL limit
    # is no limit.
    db.execute(
        """
        CREATE TABLE user_limits (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER UNIQUE REFERENCES users(id) ON DELETE CASCADE,
            max_concurrent INTEGER CHECK (max_concurrent >= 0),
            requests_per_minute INTEGER CHECK (requests_per_minute >= 0),
            tokens_per_day INTEGER CHECK (tokens_per_day >= 0),
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        "CREATE UNIQUE INDEX user_limits_one_default ON user_limits ((user_id IS NULL)) "
        "WHERE user_id IS NULL"
    )
    # One row per answer request, from /v1 (key_id set) or the web UI (key_id NULL): counts
    # and timings only, no content. Times in ms; ttft from the engine request's send to its
    # first streamed token. `status`: completed, stopped (the client left), failed, refused.
    # A /v1 request's row is written when it is admitted, as `streaming`, in the same
    # transaction as the limits check (duet.limits), and gets its outcome when it ends
    # (`interrupted`: the server stopped first). A web UI answer is counted by its message while
    # it streams, and its row, naming that message, is written when it has ended.
    db.execute(
        """
        CREATE TABLE api_requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            key_id INTEGER REFERENCES api_keys(id) ON DELETE SET NULL,
            message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
            engine TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            ttft_ms REAL,
            duration_ms REAL,
            status TEXT NOT NULL CHECK (
                status IN (
                    'streaming', 'completed', 'stopped', 'failed', 'interrupted', 'refused'
                )
            ),
            created_at TEXT NOT NULL
        )
        """
    )
    # Covering for the limits' counts of a user's day and minute (duet.limits).
    db.execute(
        "CREATE INDEX api_requests_by_user "
        "ON api_requests (user_id, created_at, status, completion_tokens)"
    )
    db.execute("CREATE INDEX api_requests_by_time ON api_requests (created_at)")
    db.execute(
        "CREATE INDEX api_requests_streaming ON api_requests (user_id) WHERE status = 'streaming'"
    )
    db.execute(
        "CREATE INDEX api_requests_by_message ON api_requests (message_id) "
        "WHERE message_id IS NOT NULL"
    )


@migration
def m009_messages_trigram(db: sqlite3.Connection) -> None:
    # A second index over the same text, of every three-character sequence: Chinese, Japanese
    # and Korean are written without spaces, and the word index (m004) takes a whole run of
    # them for one word, so a search for 北京 inside 我住在北京市 found nothing. Kept in step
    # by triggers like the word index; filled from the messages already stored.
    db.execute(
        """
        CREATE VIRTUAL TABLE messages_trigram USING fts5(
            content, reasoning, content='messages', content_rowid='id', tokenize='trigram'
        )
        """
    )
    triggers = (
        """
        CREATE TRIGGER messages_trigram_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_trigram (rowid, content, reasoning)
            VALUES (new.id, new.content, new.reasoning);
        END
        """,
        """
        CREATE TRIGGER messages_trigram_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_trigram (messages_trigram, rowid, content, reasoning)
            VALUES ('delete', old.id, old.content, old.reasoning);
        END
        """,
        """
        CREATE TRIGGER messages_trigram_update AFTER UPDATE OF content, reasoning ON messages
        BEGIN
            INSERT INTO messages_trigram (messages_trigram, rowid, content, reasoning)
            VALUES ('delete', old.id, old.content, old.reasoning);
            INSERT INTO messages_trigram (rowid, content, reasoning)
            VALUES (new.id, new.content, new.reasoning);
        END
        """,
    )
    for trigger in triggers:
        db.execute(trigger)
    db.execute("INSERT INTO messages_trigram (messages_trigram) VALUES ('rebuild')")


@migration
def m010_load_runs(db: sqlite3.Connection) -> None:
    # Sweeps started from the Load page (issue 18): the instance's, read by admins. A point's
    # and a request's document is `duet bench load`'s own JSON (load.json's results,
    # requests.jsonl's lines), kept as text so the benchmark can grow fields without a
    # migration; the charts are the SVG it draws at the end.
    db.execute(
        """
        CREATE TABLE load_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
            status TEXT NOT NULL,
            request TEXT NOT NULL,
            config TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE load_points (
            id INTEGER PRIMARY KEY,
            load_run_id INTEGER NOT NULL REFERENCES load_runs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            series TEXT NOT NULL,
            label TEXT NOT NULL,
            document TEXT NOT NULL,
            UNIQUE (load_run_id, position)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE load_requests (
            id INTEGER PRIMARY KEY,
            load_run_id INTEGER NOT NULL REFERENCES load_runs(id) ON DELETE CASCADE,
            record TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX load_requests_by_run ON load_requests (load_run_id)")
    db.execute(
        """
        CREATE TABLE load_charts (
            load_run_id INTEGER NOT NULL REFERENCES load_runs(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            svg TEXT NOT NULL,
            PRIMARY KEY (load_run_id, name)
        )
        """
    )


@migration
def m011_answer_versions(db: sqlite3.Connection) -> None:
    # Regenerate keeps every answer to a question (store/answer_versions.py): which answer was
    # asked beside which (another engine's answer, shown side by side), and which answer of a
    # question the conversation goes on from. The rows go with their messages.
    db.execute(
        """
        CREATE TABLE answer_sides (
            answer_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            beside_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE
        )
        """
    )
    db.execute("CREATE INDEX answer_sides_by_beside ON answer_sides (beside_id)")
    db.execute(
        """
        CREATE TABLE chosen_answers (
            question_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            answer_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE
        )
        """
    )
    db.execute("CREATE INDEX chosen_answers_by_answer ON chosen_answers (answer_id)")


@migration
def m012_compare_answers_own_their_text(db: sqlite3.Connection) -> None:
    # A compare answer belonged to a conversation of its own, made for it when the run was
    # sent, so every run added one chat per engine to the sidebar. Now an answer lives in its
    # run's row alone (its text and times here, beside the numbers m005 already copied), and a
    # conversation is made only when the user continues an answer in the chat; `conversation_id`
    # and `message_id` then name that conversation and the answer's copy in it.
    for column in (
        "content TEXT NOT NULL DEFAULT ''",
        "reasoning TEXT NOT NULL DEFAULT ''",
        "finish_reason TEXT",
        "ttft_ms REAL",
        "ttfa_ms REAL",
        "total_ms REAL",
    ):
        db.execute(f"ALTER TABLE compare_answers ADD COLUMN {column}")
    # Every answer takes its text from its message first, so the run keeps it whatever happens
    # to that conversation below or later.
    db.execute(
        """
        UPDATE compare_answers SET
            content = messages.content, reasoning = messages.reasoning,
            finish_reason = messages.finish_reason, ttft_ms = messages.ttft_ms,
            ttfa_ms = messages.ttfa_ms, total_ms = messages.total_ms
        FROM messages WHERE messages.id = compare_answers.message_id
        """
    )
    # The conversations made for answers go, unless the user did something with one: it is
    # removed only if it still holds just the run's prompt and that answer (no later turn, no
    # other answer such as a regenerated one), keeps the title it was made with, and has no
    # live share link. Those hold nothing the run does not, and are what filled the sidebar.
    # Any other is kept as the ordinary conversation it has become, and stays linked as the
    # answer's continuation.
    db.execute(
        """
        DELETE FROM conversations WHERE id IN (
            SELECT compare_answers.conversation_id FROM compare_answers
            JOIN conversations ON conversations.id = compare_answers.conversation_id
            WHERE conversations.title LIKE '%(compare)'
              AND NOT EXISTS (
                  SELECT 1 FROM messages WHERE messages.conversation_id = conversations.id
                    AND messages.role = 'assistant'
                    AND messages.id IS NOT compare_answers.message_id
              )
              AND (
                  SELECT count(*) FROM messages WHERE messages.conversation_id = conversations.id
                    AND messages.role = 'user'
              ) <= 1
              AND NOT EXISTS (
                  SELECT 1 FROM shares WHERE shares.kind = 'conversation'
                    AND shares.object_id = conversations.id AND shares.revoked_at IS NULL
              )
        )
        """
    )


@migration
def m013_conversations_trash(db: sqlite3.Connection) -> None:
    # Deleting a conversation moves it to the trash: `deleted_at` is when, NULL while it is in
    # use. A conversation in the trash is left out of every query that shows or continues one
    # (its share links stop working with it) until it is restored, deleted for good, or purged
    # once it has been there longer than DUET_TRASH_DAYS.
    db.execute("ALTER TABLE conversations ADD COLUMN deleted_at TEXT")
    db.execute(
        "CREATE INDEX conversations_in_trash ON conversations (user_id, deleted_at)"
        " WHERE deleted_at IS NOT NULL"
    )


@migration
def m014_index_answers_once_ended(db: sqlite3.Connection) -> None:
    # The search indexes (m004's words, m009's trigrams) hold every message but the answers
    # still being written. An answer is saved every quarter second while it streams, and each
    # save rewrote its whole text into both indexes, on the event loop that carries every
    # stream; and the empty row of a new answer was indexed inside the send's own
    # transaction, before its engine request could start. Now a row is in the indexes exactly
    # while its status is not 'streaming': it goes in when the answer ends (or is stopped,
    # fails or is interrupted), with the text it ended with.
    for table in ("messages_fts", "messages_trigram"):
        for event in ("insert", "delete", "update"):
            db.execute(f"DROP TRIGGER {table}_{event}")
        put = f"""
            INSERT INTO {table} (rowid, content, reasoning)
            SELECT new.id, new.content, new.reasoning WHERE new.status != 'streaming';"""
        remove = f"""
            INSERT INTO {table} ({table}, rowid, content, reasoning)
            SELECT 'delete', old.id, old.content, old.reasoning WHERE old.status != 'streaming';"""
        db.execute(f"CREATE TRIGGER {table}_insert AFTER INSERT ON messages BEGIN {put} END")
        db.execute(f"CREATE TRIGGER {table}_delete AFTER DELETE ON messages BEGIN {remove} END")
        db.execute(
            f"CREATE TRIGGER {table}_update AFTER UPDATE OF content, reasoning, status"
            f" ON messages BEGIN {remove} {put} END"
        )
        # Rebuilt from the rows as they are, then the streaming ones taken out again.
        db.execute(f"INSERT INTO {table} ({table}) VALUES ('rebuild')")
        db.execute(
            f"INSERT INTO {table} ({table}, rowid, content, reasoning)"
            " SELECT 'delete', id, content, reasoning FROM messages WHERE status = 'streaming'"
        )


@migration
def m015_search_backlog(db: sqlite3.Connection) -> None:
    # A new message was tokenized into both search indexes (m004's words, m009's trigrams)
    # inside the send's own transaction, on the way to its engine request: that and the larger
    # commit it made were about a third of the transaction's time. Now a message that comes in
    # already ended (a user's message, a /v1 answer kept in its owner's history) is only noted
    # in `search_backlog`, and `duet.store.search_index.catch_up` indexes the backlog: after
    # each answer's engine request is on the wire, before every search, and at start-up. A
    # message is in the indexes exactly while its status is not 'streaming' and it is not in
    # the backlog; a change to one still in the backlog touches only the backlog. One trigger
    # per event does all of it, in order (SQLite promises no order between triggers).
    db.execute("CREATE TABLE search_backlog (message_id INTEGER PRIMARY KEY)")
    tables = ("messages_fts", "messages_trigram")
    for table in tables:
        for event in ("insert", "delete", "update"):
            db.execute(f"DROP TRIGGER {table}_{event}")
    waiting = "EXISTS (SELECT 1 FROM search_backlog WHERE message_id = {row}.id)"
    put = "".join(
        f"""
        INSERT INTO {table} (rowid, content, reasoning)
        SELECT new.id, new.content, new.reasoning
        WHERE new.status != 'streaming' AND NOT {waiting.format(row="new")};"""
        for table in tables
    )
    remove = "".join(
        f"""
        INSERT INTO {table} ({table}, rowid, content, reasoning)
        SELECT 'delete', old.id, old.content, old.reasoning
        WHERE old.status != 'streaming' AND NOT {waiting.format(row="old")};"""
        for table in tables
    )
    db.execute(
        """
        CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
        WHEN new.status != 'streaming' BEGIN
            INSERT INTO search_backlog (message_id) VALUES (new.id);
        END
        """
    )
    db.execute(
        f"""
        CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN {remove}
            DELETE FROM search_backlog WHERE message_id = old.id;
        END
        """
    )
    db.execute(
        f"""
        CREATE TRIGGER messages_search_update AFTER UPDATE OF content, reasoning, status
        ON messages BEGIN {remove} {put}
        END
        """
    )
