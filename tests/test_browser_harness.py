"""The browser harness itself works: headless Chromium loads a loopback page and runs its JS.

If this fails, every other browser test would fail for the same reason; start here.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.browser

TESTS_DIR = Path(__file__).resolve().parent
# The child runs outside the project, so it gets the project's pytest-asyncio setting here.
CHILD_PYTEST = (
    *("-m", "pytest", "-q", "-p", "no:cacheprovider"),
    *("-o", "asyncio_default_fixture_loop_scope=session"),
)

PAGE = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Duet harness</title></head>
<body>
  <p id="status">waiting</p>
  <button id="go" type="button">Go</button>
  <script>
    document.getElementById("go").addEventListener("click", () => {
      document.getElementById("status").textContent = "clicked at " + performance.now().toFixed(0);
    });
  </script>
</body>
</html>
"""


class _OnePageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


@pytest.fixture
def page_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OnePageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (enough to tell it is a real image)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, width, height, compressed = 8, 0, 0, b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            compressed += body
        offset += 12 + length
    return width, height, zlib.decompress(compressed)


@pytest.mark.asyncio(loop_scope="session")  # the loop the session's browser lives in
async def test_chromium_runs_page_script_and_takes_a_screenshot(
    page: Page, page_url: str, tmp_path: Path
) -> None:
    response = await page.goto(page_url)
    assert response is not None and response.status == 200
    assert await page.text_content("#status") == "waiting"

    await page.click("#go")

    await page.wait_for_function(
        "document.getElementById('status').textContent.startsWith('clicked at ')"
    )
    status = await page.text_content("#status")
    assert status is not None and status.startswith("clicked at ")

    screenshot = tmp_path / "harness.png"
    await page.screenshot(path=str(screenshot))
    width, height, scanlines = read_png(screenshot.read_bytes())
    assert (width, height) == (1280, 800)
    # A blank page would be one colour; the rendered text and button add others.
    assert len(set(scanlines)) > 2


def test_a_failing_browser_test_leaves_a_screenshot(tmp_path: Path) -> None:
    # Run a failing test in a child pytest that loads the fixtures the way tests/conftest.py
    # does. A plain (not async) test: it only waits for the child process.
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["browser_fixtures"]\n')
    (tmp_path / "test_fails.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.asyncio(loop_scope="session")
            async def test_fails_on_a_page(page):
                await page.set_content("<h1>about to fail</h1>")
                assert await page.text_content("h1") == "something else"
            """
        )
    )
    shots = tmp_path / "shots"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
        "DUET_SCREENSHOT_DIR": str(shots),
    }
    child = subprocess.run(
        [sys.executable, *CHILD_PYTEST, "test_fails.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 1, child.stdout + child.stderr  # 1: tests ran and one failed
    assert "1 failed" in child.stdout
    saved = list(shots.glob("*.png"))
    assert [path.name for path in saved] == ["test_fails.py_test_fails_on_a_page.png"]
    width, _, scanlines = read_png(saved[0].read_bytes())
    assert width == 1280
    assert len(set(scanlines)) > 2
    assert "saved" in child.stdout and str(saved[0]) in child.stdout
