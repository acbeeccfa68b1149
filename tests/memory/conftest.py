"""Memory tests: a word-overlap embedder (fast, deterministic) and the real packaged one, loaded once; a
PostgreSQL database with pgvector."""

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from baobab.store import Store

sys.path.insert(0, str(Path(__file__).parent))  # bag_of_words, also for the writer processes


@pytest.fixture(scope="session")
def minilm() -> Any:
    from baobab.memory import LocalEmbedder

    return LocalEmbedder()


@pytest.fixture
def pg(postgres_db: str) -> str:
    """A fresh PostgreSQL database whose server has pgvector (CI installs it; elsewhere the tests say why not)."""
    with Store(postgres_db).transaction() as conn:
        available = conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    if available is None:
        if os.environ.get("BAOBAB_REQUIRE_POSTGRES"):
            pytest.fail("the PostgreSQL server has no pgvector; .ci/run installs it (shared/scripts)")
        pytest.skip("pgvector is not installed (shared/scripts/pgvector_install.sh): its tests cannot run")
    return postgres_db
