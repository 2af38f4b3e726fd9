"""A real `lever serve` for the client's tests, on the file store and on PostgreSQL.

Starting, stopping and the stores come from the repository's `tests/pyshared/lever_serve.py`
(on pytest's and mypy's path), shared with the console's tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lever_serve import evidence_store, start, stop

POLICIES = Path(__file__).resolve().parent / "policies"
#: A token with the roles the tests need: raising and resuming, and reading run state.
SRE_TOKEN = "sre-token-0123456789abcdef"
CONFIG = f"""
[[tokens]]
token = "{SRE_TOKEN}"
actor = "sre@example.com"
roles = ["sre-oncall", "read"]
"""


@dataclass
class Served:
    """A running `lever serve`: its base URL and the token of an SRE."""

    url: str
    token: str
    process: subprocess.Popen[str]


def served(directory: Path, kind: str) -> Iterator[Served]:
    with evidence_store(kind) as evidence:
        url, process = start(directory, POLICIES, evidence, CONFIG)
        yield Served(url, SRE_TOKEN, process)
        stop(process)


@pytest.fixture(params=["file", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """`lever serve` on the file store, then on PostgreSQL."""
    yield from served(tmp_path, request.param)


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[Served]:
    """`lever serve` on the file store alone (for the hooks' tests)."""
    yield from served(tmp_path, "file")
