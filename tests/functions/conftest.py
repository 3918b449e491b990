"""The function app indexed once per session (``get_functions`` may run once per app object)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.funchost import FunctionIndex, index_app
from shared.frontends import http as api


@pytest.fixture(scope="session")
def functions() -> FunctionIndex:
    import function_app

    return index_app(function_app.app)


@pytest.fixture(autouse=True)
def _no_engine_leak() -> Iterator[None]:
    """Each test installs its own engine; none survives into the next test."""
    yield
    api.reset_engine(None)
