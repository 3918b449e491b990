"""Session fixtures: one real Azurite for the whole run, fresh containers/tables per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devtools.azurite import Azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as instance:
        yield instance


@pytest.fixture()
def storage_conn(azurite: Azurite) -> str:
    """Connection string of the session's Azurite (SDK-ready, no trailing ';')."""
    return azurite.connection_string


@pytest.fixture()
def unique() -> str:
    """A short unique suffix for container/table names so tests never share state."""
    return uuid.uuid4().hex[:10]
