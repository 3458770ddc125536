"""One ordinary request path: every route is reached only through the app's middleware stack,
and the package's modules import each other without cycles.

The route test is built from the app's own route table, so a route added tomorrow is checked
without anyone remembering to list it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duet
import pytest
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.settings import Settings
from duet.views.deps import RECEIVED_KEY
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Mount, Route

# Where a local Duet is reached: a loopback name, which the host check lets through.
LOCAL = "http://127.0.0.1:8080"

PACKAGE_DIR = Path(duet.__file__).parent


class RouterProbe:
    """Stands between the app's middleware stack and its router: notes, for each request,
    whether the outermost middleware's stamp is on it and which route the router gave it to."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.seen: list[tuple[str, bool, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.router, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.router(scope, receive, send)
        if scope["type"] == "http":
            stamped = isinstance(scope.get(RECEIVED_KEY), float)
            self.seen.append((scope["path"], stamped, scope.get("endpoint")))


def route_table(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, with those of included routers (kept by FastAPI as one entry per router)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from route_table(included.routes)
        else:
            yield route


def example_path(path: str) -> str:
    """The route's path with every parameter filled in."""
    return re.sub(r"\{[^}]+\}", "1", path).replace("export.1", "export.json")


@pytest.fixture
def app() -> Iterator[FastAPI]:
    port = closed_port()
    engines = {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    yield create_app(Settings(), engines=engines, database=":memory:")  # type: ignore[arg-type]


def test_every_route_is_reached_through_the_whole_middleware_stack(app: FastAPI) -> None:
    """A request for each route of the route table, against the real views (with engines that
    are down and a database in memory: bad or empty input changes nothing): each one reached
    the router with the outermost middleware's stamp, and the router gave it to that route."""
    # The app routes nothing itself: a request meets FastAPI's middleware stack first, and the
    # stack ends in the router.
    assert type(app).__call__ is FastAPI.__call__
    assert type(app).build_middleware_stack is FastAPI.build_middleware_stack
    routes = list(route_table(app.router.routes))
    assert len(routes) > 15, "the route table looks empty"
    probe = RouterProbe(app.router)
    app.router = probe  # type: ignore[assignment]
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        for route in routes:
            assert isinstance(route, Route | Mount), f"an unusual route: {route!r}"
            methods = sorted(getattr(route, "methods", None) or ["GET"])
            method = next((m for m in methods if m != "HEAD"), "GET")
            path = example_path(route.path) + ("/duet.css" if isinstance(route, Mount) else "")
            probe.seen.clear()
            response = client.request(
                method, path, headers={"Accept": "text/html"}, follow_redirects=False
            )
            assert response.status_code < 500, f"{method} {path}: {response.status_code}"
            expected = route.app if isinstance(route, Mount) else route.endpoint
            assert probe.seen == [(path, True, expected)], f"{method} {route.path}"


def imports_of(path: Path) -> set[str]:
    """The duet modules one module imports, anywhere in it (function-level imports too)."""
    module = ".".join(("duet", *path.relative_to(PACKAGE_DIR).with_suffix("").parts))
    module = module.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("duet"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("duet"):
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if is_module(submodule) else node.module)
    found.discard(module)
    return found


def is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE_DIR / relative).with_suffix(".py").exists() or (
        PACKAGE_DIR / relative / "__init__.py"
    ).exists()


def module_name(path: Path) -> str:
    name = ".".join(("duet", *path.relative_to(PACKAGE_DIR).with_suffix("").parts))
    return name.removesuffix(".__init__")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    graph = {module_name(p): imports_of(p) for p in PACKAGE_DIR.rglob("*.py")}
    assert "duet.store" in graph and "duet.store.messages" in graph["duet.store"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
