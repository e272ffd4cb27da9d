"""nanoclaw-runtimes core: hookspecs, dispatcher, config and the shared machinery of runtimes.

A runtime plugin imports :data:`hookimpl` from here; a host uses :class:`Runtimes`.
Names load on first use, so that ``python -m nanoclaw_runtimes_core.example_agent`` inside a
sandbox needs nothing but the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Runtimes
    from .hookspecs import PROJECT_NAME, hookimpl, hookspec

__all__ = ["PROJECT_NAME", "Runtimes", "hookimpl", "hookspec"]


def __getattr__(name: str) -> Any:
    if name == "Runtimes":
        from .api import Runtimes

        return Runtimes
    if name in ("PROJECT_NAME", "hookimpl", "hookspec"):
        from . import hookspecs

        return getattr(hookspecs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
