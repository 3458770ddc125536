"""The admin page: who may not use it (every /admin route of the route table), each action and
its refusals (never the last admin), the sessions it shows and ends, and usage as counts
without content."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from duet.api.keys import create_key
from duet.auth import accounts
from duet.auth.passwords import verify_sync
from duet.auth.sessions import COOKIE
from duet.store import conversations, invites, messages, runs, sessions, usage, users
from duet.store.messages import AnswerRecord
from starlette.routing import Route
from test_accounts import HX, PAGE, PASSWORD, Team, goes_to, signup_form, team_fixture  # noqa: F401
from test_request_path import route_table

SECRET = "the owner's secret words"


def admin_routes(team: Team) -> list[tuple[str, str]]:
    found = []
    for route in route_table(team.app.router.routes):
        if isinstance(route, Route) and route.path.startswith("/admin"):
            methods = sorted(set(route.methods or ()) - {"HEAD"})
            found.extend((method, route.path) for method in methods)
    return found


def snapshot(team: Team) -> list[str]:
    return list(team.db.iterdump())


def test_the_admin_routes_are_the_ones_this_file_tests(team: Team) -> None:
    assert sorted(path for _, path in admin_routes(team)) == sorted(
        [
            "/admin",
            "/admin/signup-policy",
            "/admin/users",
            "/admin/users/{user_id}/approve",
            "/admin/users/{user_id}/reject",
            "/admin/users/{user_id}/disable",
            "/admin/users/{user_id}/enable",
            "/admin/users/{user_id}/promote",
            "/admin/users/{user_id}/demote",
            "/admin/users/{user_id}/reset-password",
            "/admin/invites",
            "/admin/invites/{invite_id}/revoke",
            "/admin/sessions/{session_id}/end",
            "/admin/limits",
            "/admin/users/{user_id}/limits",
            "/admin/users/{user_id}/limits/remove",
            "/admin/api-keys",
            "/admin/api-keys/{key_id}/revoke",
        ]
    )


def test_no_one_but_an_admin_reaches_any_admin_route(team: Team) -> None:
    """Anonymous: sent to sign in; pending: to wait; a user: 403. Nothing changes."""
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    carol = team.add("carol", "pending")
    made = accounts.create_invite(team.db, ada.id, "user", 24, datetime.now(UTC))
    team.as_(ada)
    ada_session = sessions.list_sessions(team.db, ada.id)[0]
    key = create_key(team.db, bob.id, "bob's key", None, None, datetime.now(UTC)).key
    ids = {
        "{user_id}": carol.id,
        "{invite_id}": made.invite.id,
        "{session_id}": ada_session.id,
        "{key_id}": key.id,
    }
    form = {"name": "mallory", "role": "admin", "hours": "24", "policy": "open"}
    for method, template in admin_routes(team):
        path = template
        for name, value in ids.items():
            path = path.replace(name, str(value))
        for who, expected in ((None, 401), (carol, 403), (bob, 403)):
            client = team.as_(who)
            before = snapshot(team)
            data = form if method == "POST" else None
            response = client.request(method, path, data=data)
            assert response.status_code == expected, (method, path, who, response.text)
            if who is carol:
                assert "approval" in response.text
            if who is bob:
                assert "Only an admin can do that." in response.text
            paged = client.request(method, path, headers=PAGE, data=data)
            if method == "GET":
                go_to = {None: "/signin", carol: "/waiting"}.get(who)
                assert goes_to(paged, go_to) if go_to else paged.status_code == 403
            assert snapshot(team) == before, (method, path, who)
        # An htmx request is told where to go.
        redirected = team.as_(None).request(method, path, headers=HX, data=data)
        assert redirected.headers["HX-Redirect"].startswith("/signin")


def test_a_disabled_or_must_change_admin_is_refused_too(team: Team) -> None:
    ada = team.add("ada", "admin")
    grace = team.add("grace", "admin")
    client = team.as_(grace)
    accounts.set_disabled(team.db, grace.id, True)
    assert goes_to(client.get("/admin", headers=PAGE), "/signin")
    accounts.set_disabled(team.db, grace.id, False)
    accounts.reset_password(team.db, ada.id, "a hash")
    assert goes_to(team.as_(ada).get("/admin", headers=PAGE), "/account/password")


def test_the_page_lists_accounts_pending_sessions_and_no_content(team: Team) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    team.add("carol", "pending")
    conversation = conversations.create_conversation(team.db, bob.id, SECRET)
    messages.add_user_message(team.db, conversation.id, SECRET)
    team.as_(bob)
    page = team.as_(ada).get("/admin")
    assert page.status_code == 200
    accounts_table = page.text.split('id="accounts"')[1].split("</table>")[0]
    assert 'data-user="ada"' in accounts_table and 'data-user="bob"' in accounts_table
    assert "(the last admin)" in accounts_table and "(you)" in accounts_table
    pending = page.text.split('id="pending"')[1].split("</table>")[0]
    assert 'data-user="carol"' in pending and "/approve" in pending and "/reject" in pending
    signed_in = page.text.split('id="sessions"')[1].split("<tbody>")[1].split("</table>")[0]
    assert signed_in.count("<tr>") == 2 and "10.0.0.7" in signed_in and "pytest" in signed_in
    assert "<td>bob</td>" in signed_in and "this one" in signed_in
    assert SECRET not in page.text


def test_approve_and_reject(team: Team) -> None:
    ada = team.add("ada", "admin")
    carol = team.add("carol", "pending")
    dave = team.add("dave", "pending")
    client = team.as_(ada)
    approved = client.post(f"/admin/users/{carol.id}/approve", headers=HX)
    assert approved.status_code == 200 and "carol is approved" in approved.text
    assert approved.text.lstrip().startswith('<div id="flash" hx-swap-oob')
    assert users.find_user(team.db, "carol").role == "user"  # type: ignore[union-attr]
    rejected = client.post(f"/admin/users/{dave.id}/reject", headers=HX)
    assert rejected.status_code == 200 and users.find_user(team.db, "dave") is None
    again = client.post(f"/admin/users/{carol.id}/approve", headers=HX)
    assert again.status_code == 409 and again.headers["HX-Retarget"] == "#flash"
    assert "not waiting for approval" in again.text
    assert client.post(f"/admin/users/{dave.id}/approve", headers=HX).status_code == 404


def test_disabling_ends_the_users_sessions_at_once(team: Team) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    assert goes_to(team.sign_in("bob"), "/")
    bob_cookie = str(team.client.cookies.get(COOKIE))
    assert team.client.get("/").status_code == 200
    disabled = team.as_(ada).post(f"/admin/users/{bob.id}/disable", headers=HX)
    assert disabled.status_code == 200 and "signed out everywhere" in disabled.text
    assert sessions.list_sessions(team.db, bob.id) == []
    team.client.cookies.clear()
    team.client.cookies.set(COOKIE, bob_cookie)
    assert goes_to(team.client.get("/", headers=PAGE), "/signin")
    assert team.sign_in("bob").status_code == 401
    enabled = team.as_(ada).post(f"/admin/users/{bob.id}/enable", headers=HX)
    assert enabled.status_code == 200 and "bob can sign in again" in enabled.text
    assert goes_to(team.sign_in("bob"), "/")


def test_the_last_admin_cannot_be_demoted_or_disabled(team: Team) -> None:
    ada = team.add("ada", "admin")
    client = team.as_(ada)
    before = snapshot(team)
    for action in ("demote", "disable"):
        refused = client.post(f"/admin/users/{ada.id}/{action}", headers=HX)
        assert refused.status_code == 409 and refused.headers["HX-Retarget"] == "#flash"
        assert "ada is the last admin" in refused.text
        assert "make someone else an admin first" in refused.text
    assert snapshot(team) == before
    # A plain form post (no htmx) gets the same refusal as a page.
    page = client.post(f"/admin/users/{ada.id}/demote", headers=PAGE)
    assert page.status_code == 409 and "ada is the last admin" in page.text


def test_promote_and_demote(team: Team) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    client = team.as_(ada)
    assert "bob is an admin" in client.post(f"/admin/users/{bob.id}/promote", headers=HX).text
    # bob is an admin now: his own session reaches the page.
    assert team.as_(bob).get("/admin").status_code == 200
    demoted = team.as_(bob).post(f"/admin/users/{ada.id}/demote", headers=HX)
    assert demoted.status_code == 200 and "ada is no longer an admin" in demoted.text
    assert team.as_(ada).get("/admin").status_code == 403
    refused = team.as_(bob).post(f"/admin/users/{bob.id}/demote", headers=HX)
    assert refused.status_code == 409 and "bob is the last admin" in refused.text


def temporary_password(response_text: str) -> str:
    found = re.search(r'<code class="secret">([^<]+)</code>', response_text)
    assert found, response_text
    return found.group(1)


def test_a_reset_password_is_shown_once_ends_sessions_and_must_be_changed(team: Team) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    team.as_(bob)
    team.as_(bob)
    reset = team.as_(ada).post(f"/admin/users/{bob.id}/reset-password", headers=HX)
    assert reset.status_code == 200 and "signed out everywhere" in reset.text
    password = temporary_password(reset.text)
    assert sessions.list_sessions(team.db, bob.id) == []
    stored = users.get_user(team.db, bob.id)
    assert stored is not None and stored.must_change_password
    assert verify_sync(stored.password_hash, password)
    # Shown once: the page does not show it again, and the old password is gone.
    assert password not in team.client.get("/admin").text
    assert team.sign_in("bob", PASSWORD).status_code == 401
    assert goes_to(team.sign_in("bob", password), "/")
    assert goes_to(team.client.get("/", headers=PAGE), "/account/password")
    changed = team.client.post(
        "/account/password",
        data={
            "current": password,
            "password": "bob's own password",
            "repeat": "bob's own password",
        },
    )
    assert goes_to(changed, "/")
    assert team.client.get("/").status_code == 200


def test_an_admin_creates_an_account_with_a_temporary_password(team: Team) -> None:
    ada = team.add("ada", "admin")
    client = team.as_(ada)
    made = client.post("/admin/users", data={"name": "erin", "role": "user"}, headers=HX)
    assert made.status_code == 200 and "erin can sign in, as a user" in made.text
    password = temporary_password(made.text)
    erin = users.find_user(team.db, "erin")
    assert erin is not None and erin.role == "user" and erin.must_change_password
    assert goes_to(team.sign_in("erin", password), "/")
    assert goes_to(team.client.get("/", headers=PAGE), "/account/password")
    client = team.as_(ada)
    taken = client.post("/admin/users", data={"name": "ERIN", "role": "user"}, headers=HX)
    assert taken.status_code == 409 and "taken" in taken.text
    for form, expected in (
        ({"name": "", "role": "user"}, "1 to 64 printable"),
        ({"name": "frank", "role": "pending"}, "The role is one of: user, admin"),
        ({"name": "frank"}, "The role is one of"),
    ):
        refused = client.post("/admin/users", data=form, headers=HX)
        assert refused.status_code == 422 and expected in refused.text
    assert users.find_user(team.db, "frank") is None


def test_invites_are_shown_once_listed_and_revoked(team: Team) -> None:
    ada = team.add("ada", "admin")
    client = team.as_(ada)
    made = client.post("/admin/invites", data={"role": "user", "hours": "48"}, headers=HX)
    link = temporary_password(made.text)
    token = link.rsplit("/", 1)[1]
    assert link.startswith("http://127.0.0.1:8080/invite/") and len(token) >= 40
    assert token not in str(list(team.db.iterdump()))
    page = client.get("/admin").text
    assert token not in page
    listed = page.split('id="invites"')[1].split("</table>")[0]
    assert "<td>ada</td>" in listed and "open" in listed
    invite = invites.list_invites(team.db)[0]
    revoked = client.post(f"/admin/invites/{invite.id}/revoke", headers=HX)
    assert revoked.status_code == 200 and "revoked" in revoked.text
    assert team.as_(None).get(f"/invite/{token}", headers=PAGE).status_code == 404
    again = team.as_(ada).post(f"/admin/invites/{invite.id}/revoke", headers=HX)
    assert again.status_code == 404


def test_a_used_invite_is_listed_with_its_account_and_cannot_be_revoked(team: Team) -> None:
    ada = team.add("ada", "admin")
    made = accounts.create_invite(team.db, ada.id, "user", 24, datetime.now(UTC))
    team.as_(None).post(f"/invite/{made.token}", data=signup_form("bob"))
    client = team.as_(ada)
    assert "used by bob" in client.get("/admin").text
    assert client.post(f"/admin/invites/{made.invite.id}/revoke", headers=HX).status_code == 404
    expired = accounts.create_invite(team.db, ada.id, "user", 1, datetime(2000, 1, 1, tzinfo=UTC))
    listed = client.get("/admin").text.split('id="invites"')[1]
    assert "expired" in listed and f"/admin/invites/{expired.invite.id}/revoke" in listed


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"role": "user", "hours": "0"}, "between 1 and 720"),
        ({"role": "user", "hours": "721"}, "between 1 and 720"),
        ({"role": "user", "hours": "a day"}, "whole number"),
        ({"role": "pending", "hours": "24"}, "The role is one of"),
    ],
)
def test_a_bad_invite_is_refused(team: Team, form: dict[str, str], expected: str) -> None:
    ada = team.add("ada", "admin")
    refused = team.as_(ada).post("/admin/invites", data=form, headers=HX)
    assert refused.status_code == 422 and expected in refused.text
    assert invites.list_invites(team.db) == []


def test_the_signup_policy_switch(team: Team) -> None:
    ada = team.add("ada", "admin")
    client = team.as_(ada)
    assert 'value="closed" checked' in client.get("/admin").text
    opened = client.post("/admin/signup-policy", data={"policy": "open"}, headers=HX)
    assert opened.status_code == 200 and 'value="open" checked' in opened.text
    assert accounts.signup_policy(team.db) == "open"
    assert team.as_(None).get("/signup").status_code == 200
    client = team.as_(ada)
    bad = client.post("/admin/signup-policy", data={"policy": "first come"}, headers=HX)
    assert bad.status_code == 422 and accounts.signup_policy(team.db) == "open"
    client.post("/admin/signup-policy", data={"policy": "closed"}, headers=HX)
    assert team.as_(None).get("/signup").status_code == 403


def test_ending_a_session_signs_that_person_out(team: Team) -> None:
    ada = team.add("ada", "admin")
    team.add("bob", "user")
    team.sign_in("bob")
    bob_cookie = str(team.client.cookies.get(COOKIE))
    bob_session = sessions.list_sessions(team.db)[0]
    ended = team.as_(ada).post(f"/admin/sessions/{bob_session.id}/end", headers=HX)
    assert ended.status_code == 200 and "The session is ended" in ended.text
    team.client.cookies.clear()
    team.client.cookies.set(COOKIE, bob_cookie)
    assert goes_to(team.client.get("/", headers=PAGE), "/signin")
    again = team.as_(ada).post(f"/admin/sessions/{bob_session.id}/end", headers=HX)
    assert again.status_code == 404


def test_a_plain_form_post_gets_the_whole_page_with_the_notice(team: Team) -> None:
    """Without htmx the answer is the page itself (a redirect would lose what is shown once)."""
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    page = team.as_(ada).post(f"/admin/users/{bob.id}/reset-password")
    assert page.status_code == 200 and "<html" in page.text and 'class="secret"' in page.text


def answer(team: Team, user: users.User, engine: str, status: str, tokens: int | None) -> None:
    conversation = conversations.create_conversation(team.db, user.id, SECRET)
    messages.add_user_message(team.db, conversation.id, SECRET)
    message = messages.start_assistant_message(
        team.db, conversation.id, engine=engine, model="m", thinking=False, parameters={}
    )
    record = AnswerRecord(status, content=SECRET, completion_tokens=tokens)  # type: ignore[arg-type]
    messages.save_assistant(team.db, message.id, record)


def test_usage_counts_answers_and_tokens_per_user_engine_and_day(team: Team) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    answer(team, bob, "vllm", "complete", 100)
    answer(team, bob, "vllm", "stopped", 20)
    answer(team, bob, "vllm", "failed", None)
    answer(team, bob, "ollama", "complete", 7)
    answer(team, ada, "ollama", "complete", 1000)
    # A compare run: one answer, then continued in the chat (counted once, before and after),
    # and one that never started.
    run = runs.create_run(
        team.db, bob.id, prompt=SECRET, system_prompt="", mode="concurrent", thinking=False,
        parameters={}, engines=[("vllm", "m"), ("ollama", "m")],
    )  # fmt: skip
    runs.mark_streaming(team.db, run.answers[0].id, 0.0)
    runs.save_answer(team.db, run.answers[0].id, AnswerRecord("complete", completion_tokens=5))
    runs.finish_unstarted(team.db, run.answers[1].id, "failed", "down")
    today = datetime.now(UTC).date().isoformat()
    expected = {
        ("ada", "ollama"): (1, 0, 1000),
        ("bob", "ollama"): (1, 1, 7),
        ("bob", "vllm"): (3, 1, 125),
    }
    found = {(u.user_name, u.engine): u for u in usage.usage_since(team.db, "2000-01-01")}
    assert {key: (u.answers, u.failed, u.completion_tokens) for key, u in found.items()} == expected
    continued = runs.continue_in_chat(team.db, bob.id, run.answers[0].id, SECRET)
    found = {(u.user_name, u.engine): u for u in usage.usage_since(team.db, "2000-01-01")}
    assert {key: (u.answers, u.failed, u.completion_tokens) for key, u in found.items()} == expected
    assert {u.day for u in found.values()} == {today}
    # Deleting the conversation it was continued in keeps its count, from the run.
    conversations.delete_conversation(team.db, bob.id, continued)
    again = {(u.user_name, u.engine): u for u in usage.usage_since(team.db, "2000-01-01")}
    assert again[("bob", "vllm")].answers == 3 and again[("bob", "vllm")].completion_tokens == 125
    assert usage.usage_since(team.db, "9999-01-01") == []
    page = team.as_(ada).get("/admin").text
    table = page.split('id="usage"')[1].split("</table>")[0]
    assert f"<td>{today}</td><td>ada</td><td>ollama</td>" in table
    assert '<td class="number">1,000</td>' in table
    assert SECRET not in page
