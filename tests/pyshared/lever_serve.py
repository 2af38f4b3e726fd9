"""A real `lever serve` for the Python suites (the client's and the console's).

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
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def lever_bin() -> str:
    path = os.environ.get("LEVER_BIN") or str(ROOT / "target" / "debug" / "lever")
    if not Path(path).is_file():
        pytest.fail(f"no lever binary at {path}: run `cargo build` or set LEVER_BIN")
    return path


def database_url() -> str:
    return os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


def start(
    directory: Path, policies: Path, evidence: str, config: str
) -> tuple[str, subprocess.Popen[str]]:
    """Starts `lever serve` in `directory` with `config` as its TOML; its URL, once it
    listens, and its process."""
    (directory / "lever.toml").write_text(config)
    process = subprocess.Popen(
        [lever_bin(), "serve", "--artifact", str(policies), "--evidence", evidence,
         "--config", "lever.toml", "--listen", "127.0.0.1:0"],
        cwd=directory, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    said = []
    for line in process.stderr:
        if line.startswith("lever: serving on "):
            # Keep reading its standard error so that the server never blocks on it.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return line.removeprefix("lever: serving on ").strip(), process
        said.append(line)
    process.wait()
    pytest.fail(f"lever serve exited with {process.returncode}: {''.join(said)}")


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM; the server must drain and exit 0."""
    process.terminate()
    assert process.wait(timeout=60) == 0


@contextmanager
def evidence_store(kind: str) -> Iterator[str]:
    """An evidence store URL: `file:evidence` (in the server's directory), or a fresh
    PostgreSQL schema, migrated, and dropped after."""
    if kind == "file":
        yield "file:evidence"
        return
    if shutil.which("psql") is None:
        pytest.fail("psql is needed to drop the test's PostgreSQL schema")
    schema = f"lever_py_{uuid.uuid4().hex[:12]}"
    url = f"{database_url()}?schema={schema}"
    migrate = subprocess.run(
        [lever_bin(), "evidence", "migrate", "--evidence", url, "--no-roles"],
        capture_output=True, text=True,
    )  # fmt: skip
    if migrate.returncode != 0:
        pytest.fail(f"PostgreSQL at {database_url()} is not reachable: {migrate.stderr}")
    try:
        yield url
    finally:
        subprocess.run(
            ["psql", database_url(), "-q", "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
            check=True, capture_output=True,
        )  # fmt: skip
