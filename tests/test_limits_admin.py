"""The admin page's limits and usage (views/admin_limits.py, templates _admin_limits.html and
_admin_usage.html): the defaults and one account's own limits set and removed, bad numbers
refused, no one but an admin let in, and the chart and totals of tokens per user and engine."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from duet.limits import admit
from duet.store import api_usage, user_limits
from duet.store.user_limits import NO_LIMITS, LimitValues
from test_accounts import HX, Team, team_fixture  # noqa: F401

BLANK = {"max_concurrent": "", "requests_per_minute": "", "tokens_per_day": ""}


def limits_row(page: str, name: str) -> str:
    """The text of `name`'s row in the table of limits, its whitespace made single spaces."""
    table = page.split('id="account-limits"')[1].split("</table>")[0]
    row = table.split(f'<tr data-user="{name}">')[1].split("</tr>")[0]
    return " ".join(row.split())


def test_an_admin_sets_the_defaults_and_an_accounts_own_limits(team: Team) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    client = team.as_(ada)
    saved = client.post(
        "/admin/limits",
        data={"max_concurrent": "2", "requests_per_minute": "", "tokens_per_day": "50,000"},
        headers=HX,
    )
    assert saved.status_code == 200, saved.text
    assert (
        "The default limits are answers at once 2, answers a minute no limit, "
        "tokens a day 50,000." in saved.text
    )
    assert user_limits.defaults(team.db) == LimitValues(2, None, 50_000)
    bobs_row = limits_row(saved.text, "bob")
    assert "<td>the defaults</td>" in bobs_row
    assert re.findall(r'name="(\w+)" [^>]*value="([^"]*)"', bobs_row) == [
        ("max_concurrent", "2"),
        ("requests_per_minute", ""),
        ("tokens_per_day", "50000"),
    ]

    # Bob has no limits at all of his own: blank fields are no limit, not "the defaults".
    own = client.post(f"/admin/users/{bob.id}/limits", data=BLANK, headers=HX)
    assert own.status_code == 200
    assert "bob has limits of their own, instead of the defaults: no limits." in own.text
    assert user_limits.limits_for(team.db, bob.id) == NO_LIMITS
    assert user_limits.limits_for(team.db, ada.id) == LimitValues(2, None, 50_000)
    bobs_row = limits_row(own.text, "bob")
    assert "<td>their own</td>" in bobs_row and "Use the defaults" in bobs_row
    assert re.findall(r'value="([^"]*)"', bobs_row) == ["", "", ""]
    assert "Use the defaults" not in limits_row(own.text, "ada")

    back = client.post(f"/admin/users/{bob.id}/limits/remove", headers=HX)
    assert back.status_code == 200 and "bob has the default limits again." in back.text
    assert user_limits.overrides(team.db) == {}
    again = client.post(f"/admin/users/{bob.id}/limits/remove", headers=HX)
    assert again.status_code == 200 and "bob has the default limits already." in again.text
    missing = client.post("/admin/users/999/limits", data=BLANK, headers=HX)
    assert missing.status_code == 404


def test_numbers_that_are_not_limits_are_refused_and_change_nothing(team: Team) -> None:
    ada = team.add("ada", "admin")
    client = team.as_(ada)
    user_limits.set_defaults(team.db, LimitValues(3, 4, 5))
    for bad in ("-1", "abc", "1e3", "2.5", "\u0663", "1_000", "10000000000"):
        refused = client.post("/admin/limits", data={**BLANK, "tokens_per_day": bad}, headers=HX)
        assert refused.status_code == 422, bad
        assert "Tokens a day is blank (no limit) or a whole number" in refused.text
    assert user_limits.defaults(team.db) == LimitValues(3, 4, 5)


def test_no_one_but_an_admin_may_set_limits(team: Team) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    carol = team.add("carol", "pending")
    paths = ("/admin/limits", f"/admin/users/{bob.id}/limits")
    for who, expected in ((None, 401), (carol, 403), (bob, 403)):
        client = team.as_(who)
        for path in paths:
            response = client.post(path, data={**BLANK, "max_concurrent": "0"})
            assert response.status_code == expected, (who, path)
    user_limits.set_override(team.db, bob.id, LimitValues(1))
    assert team.as_(bob).post(f"/admin/users/{bob.id}/limits/remove").status_code == 403
    assert user_limits.defaults(team.db) == NO_LIMITS
    assert user_limits.overrides(team.db) == {bob.id: LimitValues(1)}
    # An admin's form posted from another site is refused too.
    crossed = team.as_(ada).post(
        "/admin/limits",
        data={**BLANK, "max_concurrent": "0"},
        headers={"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    )
    assert crossed.status_code == 403
    assert user_limits.defaults(team.db) == NO_LIMITS


def test_the_page_charts_tokens_per_day_per_user_and_engine_with_totals(team: Team) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    for user, engine, at, tokens in (
        (ada, "vllm", now, 120),
        (ada, "ollama", yesterday, 30),
        (bob, "vllm", yesterday, 400),
        (bob, "vllm", now - timedelta(days=40), 9999),  # before the chart's days
    ):
        request_id = admit(team.db, user.id, key_id=None, engine=engine, model="q", now=at)
        api_usage.finish_request(
            team.db, request_id, api_usage.Outcome("completed", 10, tokens, 5.0, 50.0)
        )
    page = team.as_(ada).get("/admin")
    assert page.status_code == 200
    chart = page.text.split('id="usage-chart"')[1].split("</figure>")[0]
    today, before = now.date().isoformat(), yesterday.date().isoformat()
    # Series in legend order: ada · ollama, ada · vllm, bob · vllm.
    assert re.findall(r'<rect id="(bar-[^"]+)"', chart) == [
        f"bar-0-{before}",
        f"bar-1-{today}",
        f"bar-2-{before}",
    ]
    legend = re.findall(r"</svg> ([^<]+)</li>", chart)
    assert legend == [
        "ada · ollama: 30 tokens",
        "ada · vllm: 120 tokens",
        "bob · vllm: 400 tokens",
    ]
    assert "style" not in chart  # the CSP allows no inline style
    totals = page.text.split('id="usage-totals"')[1].split("</table>")[0]
    cells = [re.sub(r"<[^>]+>", " ", row).split() for row in totals.split("<tr>")[2:]]
    assert cells == [
        ["ada", "ollama", "1", "0", "10", "30"],
        ["ada", "vllm", "1", "0", "10", "120"],
        ["bob", "vllm", "1", "0", "10", "400"],
        ["total", "3", "0", "30", "550"],
    ]
