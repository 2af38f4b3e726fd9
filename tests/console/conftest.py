"""A real `lever serve` and Debian's Chromium for the console's tests.

The server comes from `tests/pyshared/lever_serve.py` (shared with the client's tests):
`$LEVER_BIN`, on the file store or a PostgreSQL schema of its own. Chromium is
`$LEVER_CHROMIUM` (default `/usr/bin/chromium`), driven by Playwright: never a browser
Playwright downloads. Screenshots go to `$LEVER_SCREENSHOTS` (default
`target/console-screenshots`) and, with `LEVER_UPDATE_DOCS=1`, to `docs/images/console`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from lever_serve import ROOT, evidence_store, start, stop
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

POLICIES = Path(__file__).resolve().parent / "policies"

#: May raise, resume, read and deploy.
SRE = "sre-token-0123456789abcdef"
#: May request and approve suspensions, and read.
SEC = "sec-token-0123456789abcdef"
SEC2 = "sec2-token-0123456789abcdef"
#: Names an actor but may not read.
NOREAD = "noread-token-0123456789abcdef"

TOKENS = f"""
[[tokens]]
token = "{SRE}"
actor = "sre@example.com"
roles = ["sre-oncall", "read"]
admin = true

[[tokens]]
token = "{SEC}"
actor = "sec@example.com"
roles = ["security", "read"]

[[tokens]]
token = "{SEC2}"
actor = "sec2@example.com"
roles = ["security", "read"]

[[tokens]]
token = "{NOREAD}"
actor = "nobody@example.com"
roles = []
"""


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Served:
    """A running `lever serve`: its base URL, its store's kind, and an HTTP client."""

    url: str
    store: str
    process: subprocess.Popen[str]
    http: httpx.Client

    def post(self, path: str, body: dict[str, Any], token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = self.http.post(f"{self.url}{path}", json=body, headers=headers)
        assert answer.status_code < 500, answer.text
        return answer.json()

    def start(self, run: str, agent: str = "console-bot", tenant: str = "acme") -> None:
        body = {"run_id": run, "ts": now(), "tenant": tenant, "agent": agent, "api_key": "k-7"}
        assert self.post("/v1/runs", body)["action"] == "continue"

    def step(self, run: str, cost: str) -> Any:
        body = {"ts": now(), "cost": cost, "input_tokens": 1000, "output_tokens": 200}
        return self.post(f"/v1/runs/{run}/steps", body)


def serving(tmp_path: Path, kind: str, config: str) -> Iterator[Served]:
    """`lever serve` with `config` on a fresh file store or PostgreSQL schema."""
    with evidence_store(kind) as evidence:
        url, process = start(tmp_path, POLICIES, evidence, config)
        served = Served(url, kind, process, httpx.Client(timeout=60))
        yield served
        served.http.close()
        stop(process)


@pytest.fixture(params=["file", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """`lever serve` with the default `[ui]` (reads need a token), on both stores."""
    yield from serving(tmp_path, request.param, TOKENS)


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[Served]:
    """`lever serve` with `[ui] require_token = false`, on the file store."""
    yield from serving(tmp_path, "file", TOKENS + "\n[ui]\nrequire_token = false\n")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    chromium = os.environ.get("LEVER_CHROMIUM", "/usr/bin/chromium")
    flags = [
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ]  # fmt: skip
    with sync_playwright() as p:
        yield launch(p, chromium, flags)


def launch(p: Playwright, chromium: str, flags: list[str]) -> Browser:
    if not Path(chromium).is_file():
        pytest.fail(f"no Chromium at {chromium}: apt-get install chromium, or set LEVER_CHROMIUM")
    return p.chromium.launch(executable_path=chromium, args=flags)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A laptop-sized tab; a script error in it fails the test."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    context.close()
    assert errors == [], f"script errors in the console: {errors}"


def screenshot(page: Page, name: str, *, docs: bool) -> None:
    """Keeps a full-page screenshot under target/, named for the view and the store; with
    `docs` and `LEVER_UPDATE_DOCS=1`, the docs' copy too."""
    out = Path(os.environ.get("LEVER_SCREENSHOTS", str(ROOT / "target" / "console-screenshots")))
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    if docs and os.environ.get("LEVER_UPDATE_DOCS") == "1":
        kept = ROOT / "docs" / "images" / "console"
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / f"{name}.png", kept / f"{name}.png")
