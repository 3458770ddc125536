"""Fuzzing every route of the route table (issue 11): Hypothesis sends random and hostile path
parameters, query strings, form fields, headers and bodies (url-encoded, raw bytes, multipart,
JSON), and after each request checks that

- no response is a 5xx;
- a refused request (4xx) stored nothing: conversations, messages, compare runs and compare
  answers are as many as before it;
- the database passes `PRAGMA integrity_check` and `foreign_key_check`.

One app serves the whole module, seeded with conversations and compare runs, so that small ids
reach real objects and the fuzzing goes on against what earlier requests left (renamed, deleted,
new answers). The engines are down: an accepted request starts an answer that fails at once.
Each route gets its own test and a fixed number of examples; `derandomize` makes the examples
the same on every run, so CI reproduces a failure seen anywhere.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis
import pytest
from down_engine import DownEngine
from duet.app import create_app
from duet.settings import Settings
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Mount, Route
from test_bad_input import (
    ARABIC_INDIC_ONE,
    BAD_IDS,
    COMPARE_FORM,
    TABLES,
    down_engines,
    seed,
)
from test_request_path import route_table
from test_views import LOCAL, VALID_FORM

EXAMPLES_PER_ROUTE = 7
SETTLE_SECONDS = 10.0

# Text without lone surrogates (which no client can encode as UTF-8) or line breaks in headers.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)

HOSTILE = [
    "",
    " ",
    "0",
    "-1",
    "1",
    "2",
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    str(10**30),
    "9" * 4300,
    "²",
    ARABIC_INDIC_ONE,
    "1_0",
    " 1",
    "+1",
    "1.0",
    "1e3",
    "1e400",
    "nan",
    "inf",
    "-inf",
    "0x10",
    "\x00",
    "%00",
    "%FF",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "../../etc/passwd",
    "Что такое vLLM?",
    "日本語のタイトル",
    "\u202eevil",
    "x" * 5000,
    "on",
    "true",
    "vllm",
    "ollama",
    "ollama-openai",
    "concurrent",
    "sequential",
]

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
VALUES = st.one_of(st.sampled_from(HOSTILE), NUMBERS, TEXT)

# What the composer, the compare form and the rename form send, each with a usable value too.
FIELDS: dict[str, list[str]] = {
    "content": ["Hello", "Что такое vLLM?"],
    "engine": ["vllm", "ollama"],
    "thinking": ["on", ""],
    "temperature": ["0.6", "0", "2"],
    "top_p": ["0.95", "1"],
    "top_k": ["20", "0"],
    "max_tokens": ["8", "64"],
    "system_prompt": ["", "Be brief."],
    "conversation_id": ["1", "2", ""],
    "title": ["A new title"],
    "mode": ["concurrent", "sequential"],
    "engines": ["vllm", "ollama"],
}
FIELD_VALUES = {name: st.one_of(st.sampled_from(good), VALUES) for name, good in FIELDS.items()}

FREE_FORMS = st.fixed_dictionaries(
    {},
    optional={
        **FIELD_VALUES,
        "engines": st.lists(FIELD_VALUES["engines"], max_size=3),
    },
)
# A form that would be accepted, with a few fields changed: requests that get past the checks.
USABLE_FORMS = st.builds(
    lambda base, changes: {**base, **changes},
    st.sampled_from([VALID_FORM, {**COMPARE_FORM, "content": "Hello"}, {"title": "A new title"}]),
    st.dictionaries(st.sampled_from(list(FIELDS)), VALUES, max_size=2),
)
FORMS = st.one_of(FREE_FORMS, USABLE_FORMS)

JSON_NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True)
)
ARRIVALS = st.lists(
    st.tuples(JSON_NUMBERS, JSON_NUMBERS, st.sampled_from(["a", "r", "x", ""]), JSON_NUMBERS).map(
        list
    ),
    max_size=5,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | JSON_NUMBERS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@dataclass(frozen=True)
class Body:
    kind: str  # "none", "form", "raw", "multipart", "json"
    payload: Any = None


# Usable forms weigh three times: they are what reaches past the checks into the views.
USABLE_BODIES = USABLE_FORMS.map(lambda form: Body("form", form))
BODIES = st.one_of(
    USABLE_BODIES,
    USABLE_BODIES,
    USABLE_BODIES,
    st.just(Body("none")),
    FREE_FORMS.map(lambda form: Body("form", form)),
    FORMS.map(lambda form: Body("multipart", form)),
    st.binary(max_size=120).map(lambda raw: Body("raw", raw)),
    st.sampled_from([b"content=%FF%FE", b"title=%ED%A0%80", b"content=caf\xe9&engine=vllm"]).map(
        lambda raw: Body("raw", raw)
    ),
    ARRIVALS.map(lambda arrivals: Body("json", {"arrivals": arrivals})),
    JSON_VALUES.map(lambda value: Body("json", value)),
)


QUERY_NAMES = ["page", "q", "current", "thinking", "temperature", "top_p", "top_k", "max_tokens"]
QUERIES = st.dictionaries(st.sampled_from(QUERY_NAMES) | TEXT, VALUES, max_size=4)
RAW_QUERIES = st.sampled_from(["", "page=%FF", "q=%00", "current=%FF%FE", "q=%ED%A0%80", "=&&="])


def header_bytes(text: str) -> bytes:
    """What an HTTP server lets through in a header value: no control characters."""
    return bytes(b for b in text.encode() if b >= 0x20 and b != 0x7F)


HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Last-Event-ID": VALUES.map(header_bytes),
        "HX-Request": st.sampled_from(["true", "false", "", "TRUE"]),
        "Accept": st.sampled_from(
            ["text/html", "application/json", "text/event-stream", "*/*", "", "text/html;q=x"]
        ),
        "HX-Current-URL": st.sampled_from([f"{LOCAL}/c/1", f"{LOCAL}/", "/c/1", "garbage"]),
        "Content-Type": st.sampled_from(
            [
                "application/x-www-form-urlencoded; charset=latin-1",
                "multipart/form-data",
                "multipart/form-data; boundary=x",
                "application/json",
                "text/plain",
                "",
            ]
        ),
    },
)


def path_values(name: str) -> st.SearchStrategy[str]:
    if name == "extension":
        return st.one_of(st.sampled_from(["json", "md", "csv", "JSON", ""]), VALUES)
    # Ids of objects that exist (or did), so that accepted requests reach the views; ids that
    # must be refused; anything.
    return st.one_of(
        st.integers(min_value=1, max_value=25).map(str), st.sampled_from(BAD_IDS), VALUES
    )


@dataclass(frozen=True)
class Endpoint:
    methods: tuple[str, ...]
    template: str  # the route's path; a mount's with "{path}" after it
    parameters: tuple[str, ...]


def endpoints(app: FastAPI) -> list[Endpoint]:
    found = []
    for route in route_table(app.router.routes):
        if isinstance(route, Mount):
            found.append(Endpoint(("GET",), route.path + "/{path}", ("path",)))
        elif isinstance(route, Route):
            methods = tuple(sorted(m for m in route.methods or ("GET",) if m != "HEAD"))
            found.append(Endpoint(methods, route.path, tuple(route.param_convertors)))
    return found


def build_app(database: Path, engines: dict[str, DownEngine]) -> FastAPI:
    return create_app(Settings(), engines=engines, database=database)  # type: ignore[arg-type]


ENDPOINTS = endpoints(build_app(Path(":memory:"), down_engines()))


def fill(template: str, values: dict[str, str]) -> str:
    """The path with each `{name}` (or `{name:convertor}`) replaced by its value."""
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: quote(values[m[1]], safe=""), template)


@dataclass
class Fuzzed:
    client: TestClient
    database: Path
    engines: dict[str, DownEngine]
    # (method, status) of every request sent
    statuses: list[tuple[str, int]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        with sqlite3.connect(self.database) as reader:
            return {t: reader.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}

    def check_consistent(self) -> None:
        with sqlite3.connect(self.database) as reader:
            assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert reader.execute("PRAGMA foreign_key_check").fetchall() == []

    def settle(self) -> None:
        """Wait until no answer or compare run is going on (a sequential run starts its next
        answer, and writes its row, after the request that asked for it has been answered)."""
        state = self.client.app.state  # type: ignore[attr-defined]
        deadline = time.monotonic() + SETTLE_SECONDS
        while state.generations.running or state.compare_runs.running:
            assert time.monotonic() < deadline, "answers were still running"
            time.sleep(0.005)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    database = tmp_path_factory.mktemp("fuzz") / "duet.sqlite3"
    engines = down_engines()
    app = build_app(database, engines)
    with TestClient(
        app, base_url=LOCAL, raise_server_exceptions=False, follow_redirects=False
    ) as client:
        seed(client.app.state.db)  # type: ignore[attr-defined]
        yield Fuzzed(client, database, engines)


def send(
    client: TestClient,
    method: str,
    path: str,
    query: dict[str, str],
    raw_query: str,
    headers: dict[str, Any],
    body: Body,
) -> httpx.Response:
    options: dict[str, Any] = {}
    headers = dict(headers)
    if body.kind == "form":
        options["data"] = body.payload
    elif body.kind == "multipart":
        options["data"] = body.payload
        options["files"] = {"attachment": ("notes.txt", b"\xff\xfe not UTF-8", "text/plain")}
        headers.pop("Content-Type", None)  # the boundary must be httpx's
    elif body.kind == "raw":
        options["content"] = body.payload
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif body.kind == "json":
        options["content"] = json.dumps(body.payload).encode()
        headers.setdefault("Content-Type", "application/json")
    url = f"{path}?{raw_query}" if raw_query else path
    return client.request(method, url, params=query or None, headers=headers, **options)


@pytest.mark.parametrize(
    "endpoint", ENDPOINTS, ids=[f"{'/'.join(e.methods)} {e.template}" for e in ENDPOINTS]
)
def test_fuzzing_a_route_gives_no_server_error_and_refusals_store_nothing(
    fuzzed: Fuzzed, endpoint: Endpoint
) -> None:
    start = len(fuzzed.statuses)

    # A fixed seed per route: the same examples on every run, but not the same for every route
    # (derandomize would give each route's test, all one function, the same ids).
    @hypothesis.seed(zlib.crc32(f"{endpoint.methods} {endpoint.template}".encode()))
    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        method=st.sampled_from(endpoint.methods),
        values=st.fixed_dictionaries({name: path_values(name) for name in endpoint.parameters}),
        query=QUERIES,
        raw_query=RAW_QUERIES,
        headers=HEADERS,
        body=BODIES,
    )
    def one_request(
        method: str,
        values: dict[str, str],
        query: dict[str, str],
        raw_query: str,
        headers: dict[str, Any],
        body: Body,
    ) -> None:
        fuzzed.settle()
        before = fuzzed.counts()
        path = fill(endpoint.template, values)
        response = send(fuzzed.client, method, path, query, raw_query, headers, body)
        fuzzed.statuses.append((method, response.status_code))
        assert response.status_code < 500, f"{method} {path}: {response.text[:300]}"
        fuzzed.settle()
        if 400 <= response.status_code < 500:
            assert fuzzed.counts() == before, f"{method} {path} was refused but stored rows"
        fuzzed.check_consistent()

    one_request()
    assert len(fuzzed.statuses) - start >= EXAMPLES_PER_ROUTE


def test_the_fuzzing_reached_the_views_and_was_refused_too(fuzzed: Fuzzed) -> None:
    """Not a run that passes by refusing everything, nor one that never refused: changes were
    accepted and refused, and answers were started."""
    if not fuzzed.statuses:
        pytest.skip("the fuzzing tests did not run in this session")
    changes = [status for method, status in fuzzed.statuses if method in {"POST", "DELETE"}]
    assert any(s < 400 for s in changes) and any(400 <= s < 500 for s in changes)
    assert sum(engine.requests for engine in fuzzed.engines.values()) > 0, "no answer started"
    fuzzed.settle()
    fuzzed.check_consistent()
