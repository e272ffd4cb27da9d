"""nanoclaw-runtimes core: hookspecs, dispatcher, config and the shared machinery of runtimes.

A runtime plugin imports :data:`hookimpl` from here; a host uses :class:`Runtimes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hookspecs import PROJECT_NAME, hookimpl, hookspec

if TYPE_CHECKING:
    from .api import Runtimes

__all__ = ["PROJECT_NAME", "Runtimes", "hookimpl", "hookspec"]


def __getattr__(name: str) -> Any:
    # The API pulls in plugin loading and config; keep `import nanoclaw_runtimes_core` light.
    if name == "Runtimes":
        from .api import Runtimes

        return Runtimes
    raise AttributeError(name)
