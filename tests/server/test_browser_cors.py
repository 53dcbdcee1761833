"""A real browser on another origin: headless Chromium (Debian's `chromium`, driven by Playwright, which never
downloads a browser here) loads a page served from a second local port, which calls Triage's `/v1/models` and
streams a chat completion through CORS (the bearer header forces a preflight), and reads the exposed x-triage-*
headers. A page from an origin not in `server.cors_origins` is refused by the browser itself. `.ci/run` installs
chromium; without it the test skips and says why."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from server.config import parse_config

from .chromium import CHROMIUM, launch
from .conftest import RunningTriage, free_port, run_triage, sim_model

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"needs Debian's chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)",
)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency: pip install -e '.[dev]'")
# The page's test: list models, then stream a chat completion and read it chunk by chunk as a chat UI would.
PAGE = """<!doctype html><meta charset="utf-8"><title>cors test</title><script>
async function runTest(base) {
  const out = {};
  const models = await fetch(base + "/v1/models", {headers: {authorization: "Bearer unused"}});
  out.models = (await models.json()).data.map(m => m.id);
  const r = await fetch(base + "/v1/chat/completions", {
    method: "POST",
    headers: {"content-type": "application/json", authorization: "Bearer unused", "x-request-id": "browser-1"},
    body: JSON.stringify({model: "auto", stream: true, max_tokens: 8, ignore_eos: true,
                          messages: [{role: "user", content: "Tell me a joke"}]}),
  });
  out.status = r.status;
  out.model = r.headers.get("x-triage-model");
  out.request_id = r.headers.get("x-request-id");
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  out.reads = 0;
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    out.reads += 1;
    text += decoder.decode(value, {stream: true});
  }
  const events = text.split("\\n\\n").filter(e => e.startsWith("data: ")).map(e => e.slice(6));
  out.done = events[events.length - 1] === "[DONE]";
  out.content = events.slice(0, -1).map(e => JSON.parse(e).choices[0]?.delta?.content || "").join("");
  return out;
}
async function tryModels(base) {
  try { await fetch(base + "/v1/models"); return "allowed"; } catch (e) { return "refused: " + e.name; }
}
</script>"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def serve_page(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Page)
    threading.Thread(target=server.serve_forever, name=f"page-{port}", daemon=True).start()
    return server


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[RunningTriage, str, str]]:
    allowed, other = free_port(), free_port()
    pages = [serve_page(allowed), serve_page(other)]
    config = parse_config(
        {
            "models": [sim_model("chat", ["chat"], free_port())],
            "server": {"cors_origins": [f"http://127.0.0.1:{allowed}"]},
        }
    )
    try:
        with run_triage(config) as triage:
            yield triage, f"http://127.0.0.1:{allowed}/", f"http://127.0.0.1:{other}/"
    finally:
        for page in pages:
            page.shutdown()
            page.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A page in a fresh headless Chromium profile."""
    profile = Path(tmp_path_factory.mktemp("chromium"))
    with sync_api.sync_playwright() as playwright:
        context = launch(playwright, profile)
        try:
            yield context.new_page()
        finally:
            context.close()


def run_in_page(page: Any, url: str, function: str, base: str) -> Any:
    page.goto(url)
    return page.evaluate(f"base => {function}(base).catch(e => String(e))", base)


def test_a_page_on_another_origin_lists_models_and_streams(
    origins: tuple[RunningTriage, str, str], browser: Any
) -> None:
    triage, allowed, _ = origins
    out = run_in_page(browser, allowed, "runTest", triage.base_url)
    assert isinstance(out, dict), out
    assert out["models"] == ["auto", "chat"]
    assert out["status"] == 200 and out["model"] == "chat" and out["request_id"] == "browser-1"
    assert out["done"] and out["content"].startswith("[simulated]") and out["reads"] >= 1


def test_an_origin_not_listed_is_refused_by_the_browser(origins: tuple[RunningTriage, str, str], browser: Any) -> None:
    triage, _, other = origins
    assert run_in_page(browser, other, "tryModels", triage.base_url) == "refused: TypeError"
