"""The shared-quota tests' own fixtures.

Their server is the session's ``postgres_dsn`` (``tests/conftest.py``): a real
PostgreSQL started with ``pg_server.TemporaryPostgres`` on 127.0.0.1, as a
user other than root, the first time a test asks for it (the README's
"Several processes" snippet does too).
"""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own: tests never share a quota by accident."""
    return f"test-{uuid.uuid4().hex[:12]}"
