"""The trash (issue 16): a deleted conversation can be restored for DUET_TRASH_DAYS.

Accounts mode with real parts (a temporary database, engines that are down, real sign-in):
alice owns the conversations, bob is a teammate who may not see, restore or delete them.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import test_shares
from duet.app import create_app
from duet.settings import Settings
from duet.store import conversations, messages, open_database, trash, users
from fastapi.testclient import TestClient
from test_shares import HX, LOCAL, PAGE, seed_conversation, share
from test_views import VALID_FORM

# The accounts-mode app, its database, and alice's and bob's signed-in clients, as the share
# tests have them.
app, db, alice, bob = test_shares.app, test_shares.db, test_shares.alice, test_shares.bob

ON_TRASH_PAGE = {**HX, "HX-Current-URL": "http://127.0.0.1:8080/trash"}


def alice_id(db: sqlite3.Connection) -> int:
    found = users.find_user(db, "alice")
    assert found is not None
    return found.id


def test_delete_moves_to_the_trash_with_an_undo_that_restores_it(
    db: sqlite3.Connection, alice: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    deleted = alice.delete(f"/conversations/{conversation_id}", headers=HX)
    assert deleted.status_code == 200
    assert "Undo" in deleted.text and f'hx-post="/trash/{conversation_id}/restore"' in deleted.text
    # Gone from every place that shows or continues a conversation…
    assert f'href="/c/{conversation_id}"' not in alice.get("/conversations").text
    assert f'href="/c/{conversation_id}"' not in alice.get("/conversations?q=2").text
    assert alice.get(f"/c/{conversation_id}", headers=PAGE).status_code == 404
    assert alice.get(f"/conversations/{conversation_id}/export.json").status_code == 404
    send = {**VALID_FORM, "conversation_id": str(conversation_id)}
    assert alice.post("/chat/send", data=send).status_code == 404
    # …but not lost: the trash lists it, and Undo puts the sidebar entry back.
    assert "Sums, shared" in alice.get("/trash").text
    undone = alice.post(f"/trash/{conversation_id}/restore", headers=HX)
    assert undone.status_code == 200
    assert f'href="/c/{conversation_id}"' in undone.text and "Undo" not in undone.text
    assert alice.get(f"/c/{conversation_id}", headers=PAGE).status_code == 200
    assert f'href="/c/{conversation_id}"' in alice.get("/conversations?q=2").text
    assert len(messages.list_messages(db, conversation_id)) == 2


def test_deleting_the_open_conversation_offers_the_undo_on_the_new_chat(
    db: sqlite3.Connection, alice: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    open_here = {**HX, "HX-Current-URL": f"{LOCAL}/c/{conversation_id}"}
    deleted = alice.delete(f"/conversations/{conversation_id}", headers=open_here)
    assert deleted.headers["HX-Redirect"] == f"/?trashed={conversation_id}"
    page = alice.get(f"/?trashed={conversation_id}").text
    assert f'hx-get="/trash/{conversation_id}/notice"' in page
    notice = alice.get(f"/trash/{conversation_id}/notice", headers=HX)
    assert "Sums, shared" in notice.text and "30 days" in notice.text
    back = alice.post(f"/trash/{conversation_id}/restore", data={"open": "1"}, headers=HX)
    assert back.headers["HX-Redirect"] == f"/c/{conversation_id}"
    # Restored, it has no notice any more.
    assert alice.get(f"/trash/{conversation_id}/notice", headers=HX).status_code == 404


def test_the_trash_page_restores_and_deletes_forever(
    db: sqlite3.Connection, alice: TestClient
) -> None:
    kept, gone = seed_conversation(db), seed_conversation(db)
    for conversation_id in (kept, gone):
        alice.delete(f"/conversations/{conversation_id}", headers=HX)
    page = alice.get("/trash", headers=PAGE).text
    assert page.count('class="trash-row"') == 2 and "2 messages" in page
    assert "for 30 days" in page
    restored = alice.post(f"/trash/{kept}/restore", headers=ON_TRASH_PAGE)
    assert "Restored" in restored.text and f'href="/c/{kept}"' in restored.text
    assert alice.delete(f"/trash/{gone}", headers=ON_TRASH_PAGE).status_code == 200
    assert db.execute("SELECT count(*) FROM conversations WHERE id = ?", (gone,)).fetchone()[0] == 0
    assert (
        db.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", (gone,)).fetchone()[0]
        == 0
    )
    assert alice.get("/trash").text.count('class="trash-row"') == 0
    # Only what is in the trash can be deleted forever or restored.
    assert alice.delete(f"/trash/{kept}").status_code == 404
    assert alice.post(f"/trash/{kept}/restore").status_code == 404


def test_emptying_the_trash_deletes_what_the_page_showed_and_only_the_owners(
    db: sqlite3.Connection, alice: TestClient, bob: TestClient
) -> None:
    shown, later, kept = seed_conversation(db), seed_conversation(db), seed_conversation(db)
    alice.delete(f"/conversations/{shown}", headers=HX)
    page = alice.get("/trash", headers=PAGE).text
    match = re.search(r'hx-vals=\'\{"deleted_by": "([^"]+)"\}\'', page)
    assert match and 'hx-delete="/trash"' in page and "Empty the trash" in page
    deleted_by = match.group(1)
    # Deleted in another tab after the page was drawn: never shown, so not emptied.
    alice.delete(f"/conversations/{later}", headers=HX)
    # A teammate's Empty, even with alice's page's value, empties only their own (empty) trash.
    by_bob = bob.delete("/trash", params={"deleted_by": deleted_by}, headers=ON_TRASH_PAGE)
    assert by_bob.status_code == 200 and "Deleted 0 conversations" in by_bob.text
    assert trash.get_trashed(db, alice_id(db), shown, 30.0) is not None

    emptied = alice.delete("/trash", params={"deleted_by": deleted_by}, headers=ON_TRASH_PAGE)
    assert emptied.status_code == 200
    assert "Deleted 1 conversation for good" in emptied.text
    assert (
        db.execute("SELECT count(*) FROM conversations WHERE id = ?", (shown,)).fetchone()[0] == 0
    )
    assert (
        db.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", (shown,)).fetchone()[
            0
        ]
        == 0
    )
    # What is left is shown, with its Empty button; a conversation out of the trash is untouched.
    assert emptied.text.count('class="trash-row"') == 1 and "Empty the trash" in emptied.text
    assert conversations.get_conversation(db, alice_id(db), kept) is not None
    assert trash.get_trashed(db, alice_id(db), later, 30.0) is not None
    for bad in ("", "yesterday", "2026-13-01T00:00:00"):
        refused = alice.delete("/trash", params={"deleted_by": bad}, headers=ON_TRASH_PAGE)
        assert refused.status_code == 422 and "deleted_by" in refused.text, bad
    assert alice.delete("/trash", headers=ON_TRASH_PAGE).status_code == 422
    assert trash.get_trashed(db, alice_id(db), later, 30.0) is not None


def test_another_user_cannot_see_restore_or_delete_ones_trash(
    db: sqlite3.Connection, alice: TestClient, bob: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    alice.delete(f"/conversations/{conversation_id}", headers=HX)
    assert "Sums, shared" not in bob.get("/trash").text
    for response in (
        bob.post(f"/trash/{conversation_id}/restore", headers=HX),
        bob.delete(f"/trash/{conversation_id}", headers=HX),
        bob.get(f"/trash/{conversation_id}/notice", headers=HX),
    ):
        assert response.status_code == 404 and "Sums" not in response.text
    assert trash.get_trashed(db, alice_id(db), conversation_id, 30.0) is not None
    # Unknown ids are 404 too.
    assert alice.post("/trash/999999/restore").status_code == 404
    assert alice.delete("/trash/999999").status_code == 404


def test_share_links_stop_working_in_the_trash_and_work_again_when_restored(
    db: sqlite3.Connection, alice: TestClient, bob: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    _, token = share(alice, f"/conversations/{conversation_id}/share")
    alice.delete(f"/conversations/{conversation_id}", headers=HX)
    hidden = bob.get(f"/shared/{token}", headers=PAGE)
    assert hidden.status_code == 404 and "Sums" not in hidden.text
    alice.post(f"/trash/{conversation_id}/restore", headers=HX)
    assert bob.get(f"/shared/{token}").status_code == 200


def test_conversations_past_their_time_are_purged(tmp_path: Path) -> None:
    db = open_database(tmp_path / "duet.sqlite3")
    owner = users.create_user(db, "ann", "not-checked", "user").id
    old, recent, live = (conversations.create_conversation(db, owner, t) for t in "abc")
    for conversation in (old, recent):
        messages.add_user_message(db, conversation.id, "hello")
        trash.move_to_trash(db, owner, conversation.id)
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).isoformat(timespec="microseconds")
    db.execute("UPDATE conversations SET deleted_at = ? WHERE id = ?", (ten_days_ago, old.id))
    assert trash.purge_expired(db, days=7) == 1
    left = {row[0] for row in db.execute("SELECT id FROM conversations")}
    assert left == {recent.id, live.id}
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    # Eight days on, the one deleted today has had its time too.
    assert trash.purge_expired(db, days=7, now=datetime.now(UTC) + timedelta(days=8)) == 1
    assert [row[0] for row in db.execute("SELECT id FROM conversations")] == [live.id]


def test_the_app_purges_at_start_up_and_then_periodically(tmp_path: Path) -> None:
    database = tmp_path / "duet.sqlite3"
    db = open_database(database)
    owner = users.create_user(db, "ann", "not-checked", "user").id
    conversation = conversations.create_conversation(db, owner, "old")
    trash.move_to_trash(db, owner, conversation.id)
    long_ago = (datetime.now(UTC) - timedelta(days=31)).isoformat(timespec="microseconds")
    db.execute("UPDATE conversations SET deleted_at = ?", (long_ago,))
    db.close()
    app = create_app(Settings(mode="accounts"), engines={}, database=database)
    with TestClient(app, base_url=LOCAL):
        assert app.state.db.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0

    async def two_rounds() -> int:
        db = open_database(database)
        conversation = conversations.create_conversation(db, owner, "soon gone")
        trash.move_to_trash(db, owner, conversation.id)
        purging = asyncio.create_task(trash.keep_purging(db, days=0, interval=0.05))
        await asyncio.sleep(0.3)
        purging.cancel()
        return int(db.execute("SELECT count(*) FROM conversations").fetchone()[0])

    assert asyncio.run(two_rounds()) == 0
