"""A real `lever serve` for the client's tests, on the file store and on PostgreSQL.

The binary is `$LEVER_BIN`, else the repository's `target/debug/lever` (`cargo build`).
PostgreSQL is `$DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`); each
server gets a schema of its own, dropped after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
POLICIES = Path(__file__).resolve().parent / "policies"
#: A token with the roles the tests need: raising and resuming, and reading run state.
SRE_TOKEN = "sre-token-0123456789abcdef"
CONFIG = f"""
[[tokens]]
token = "{SRE_TOKEN}"
actor = "sre@example.com"
roles = ["sre-oncall", "read"]
"""


def lever_bin() -> str:
    path = os.environ.get("LEVER_BIN") or str(ROOT / "target" / "debug" / "lever")
    if not Path(path).is_file():
        pytest.fail(f"no lever binary at {path}: run `cargo build` or set LEVER_BIN")
    return path


def database_url() -> str:
    return os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


def psql(sql: str) -> None:
    if shutil.which("psql") is None:
        pytest.fail("psql is needed to drop the test's PostgreSQL schema")
    subprocess.run(["psql", database_url(), "-q", "-c", sql], check=True, capture_output=True)


@dataclass
class Served:
    """A running `lever serve`: its base URL and the token of an SRE."""

    url: str
    token: str
    process: subprocess.Popen[str]


def serve(directory: Path, evidence: str) -> Served:
    (directory / "lever.toml").write_text(CONFIG)
    process = subprocess.Popen(
        [lever_bin(), "serve", "--artifact", str(POLICIES), "--evidence", evidence,
         "--config", "lever.toml", "--listen", "127.0.0.1:0"],
        cwd=directory, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    said = []
    for line in process.stderr:
        if line.startswith("lever: serving on "):
            url = line.removeprefix("lever: serving on ").strip()
            # Keep reading its standard error so that the server never blocks on it.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return Served(url, SRE_TOKEN, process)
        said.append(line)
    process.wait()
    pytest.fail(f"lever serve exited with {process.returncode}: {''.join(said)}")


def stop(served: Served) -> None:
    served.process.terminate()
    assert served.process.wait(timeout=20) == 0


@pytest.fixture(params=["file", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """`lever serve` on the file store, then on PostgreSQL."""
    if request.param == "file":
        served = serve(tmp_path, "file:evidence")
        yield served
        stop(served)
        return
    schema = f"lever_py_{uuid.uuid4().hex[:12]}"
    url = f"{database_url()}?schema={schema}"
    migrate = subprocess.run(
        [lever_bin(), "evidence", "migrate", "--evidence", url, "--no-roles"],
        capture_output=True, text=True,
    )  # fmt: skip
    if migrate.returncode != 0:
        pytest.fail(f"PostgreSQL at {database_url()} is not reachable: {migrate.stderr}")
    try:
        served = serve(tmp_path, url)
        yield served
        stop(served)
    finally:
        psql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[Served]:
    """`lever serve` on the file store alone (for the hooks' tests)."""
    served = serve(tmp_path, "file:evidence")
    yield served
    stop(served)
