"""Running the web UI under uvicorn (`duet serve`)."""

from __future__ import annotations

import uvicorn

from duet.app import create_app
from duet.settings import Settings


def serve(host: str | None = None, port: int | None = None) -> int:
    settings = Settings.from_env()
    app = create_app(settings)
    # No proxy headers, no gzip, HTTP/1.1 keep-alive: streams go out as they are written.
    uvicorn.run(app, host=host or settings.host, port=port or settings.port, log_level="info")
    return 0
