"""Deterministic fault injection for interleaving tests: a process dying at an exact point.

``Killed`` is a ``BaseException``: no ``except Exception`` in the engine sees it, so nothing the
engine would do after the point runs — like a SIGKILL there, but in one test process and on
one exact line. Time is the tests' own clock; storage is the session's real Azurite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["Killed", "die_at"]


class Killed(BaseException):
    """The process died at this point."""


def die_at(
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    *,
    after: bool = False,
    times: int = 1,
    when: Callable[..., bool] | None = None,
) -> dict[str, int]:
    """Make ``owner.name`` kill the process (before the call, or right ``after`` it returned) the next
    ``times`` times ``when(*args, **kwargs)`` holds. Returns a counter of kills made."""
    real = getattr(owner, name)
    made = {"kills": 0}

    def hooked(*args: Any, **kwargs: Any) -> Any:
        if made["kills"] >= times or (when is not None and not when(*args, **kwargs)):
            return real(*args, **kwargs)
        made["kills"] += 1
        if after:
            real(*args, **kwargs)
        raise Killed(f"killed {'after' if after else 'at'} {getattr(owner, '__name__', owner)}.{name}")

    monkeypatch.setattr(owner, name, hooked)
    return made
