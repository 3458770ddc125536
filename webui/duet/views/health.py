"""Engine health: which engine is up and which model it serves, as badges and as JSON."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from duet.auth.actors import may
from duet.engines.base import Engine, EngineHealth
from duet.engines.events import EngineName
from duet.metrics.prometheus import Telemetry
from duet.tasks import describe_exception
from duet.views.deps import MEMBERS_ONLY, CurrentActor, Engines, render
from duet.views.errors import UserError

router = APIRouter(dependencies=MEMBERS_ONLY)


# A health check that takes longer than this counts as down: the badge must not hang the page.
HEALTH_TIMEOUT_SECONDS = 3.0


async def check(engine: Engine) -> EngineHealth:
    try:
        return await asyncio.wait_for(engine.health(), HEALTH_TIMEOUT_SECONDS)
    except TimeoutError:
        return EngineHealth(
            engine=engine.name, up=False, detail=f"no answer within {HEALTH_TIMEOUT_SECONDS:g} s"
        )
    except Exception as error:
        return EngineHealth(engine=engine.name, up=False, detail=describe_exception(error))


async def check_all(engines: Mapping[EngineName, Engine]) -> list[tuple[Engine, EngineHealth]]:
    results = await asyncio.gather(*(check(engine) for engine in engines.values()))
    return list(zip(engines.values(), results, strict=True))


@router.get("/health")
async def health_json(engines: Engines) -> dict[str, Any]:
    return {
        "engines": [
            {**asdict(health), "label": engine.label, "model": engine.model}
            for engine, health in await check_all(engines)
        ]
    }


@router.get("/health/badges", response_class=HTMLResponse)
async def health_badges(request: Request, engines: Engines) -> HTMLResponse:
    return render(request, "_health.html", {"checks": await check_all(engines)})


# /metrics is scraped by Prometheus, which has no session: in accounts mode it answers admins
# and a scraper that brings DUET_METRICS_TOKEN, under a router of its own.
metrics_router = APIRouter()


@metrics_router.get("/metrics")
async def metrics(request: Request, actor: CurrentActor) -> Response:
    """The text exposition format, for a Prometheus scrape."""
    if not may(actor, "read metrics") and not scrape_token_matches(request):
        raise UserError(403, "Metrics are for admins, or a scraper with DUET_METRICS_TOKEN.")
    telemetry: Telemetry = request.app.state.telemetry
    return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)


def scrape_token_matches(request: Request) -> bool:
    """A Prometheus scrape with `Authorization: Bearer <DUET_METRICS_TOKEN>`, when one is set."""
    expected = request.app.state.settings.metrics_token
    given = request.headers.get("authorization", "")
    return bool(expected) and hmac.compare_digest(given, f"Bearer {expected}")
