"""nanoclaw-runtime-vibe: a persistent Linux VM per group (vibe on macOS, QEMU on Linux)."""

from __future__ import annotations

from typing import Any

__all__ = ["get_vibe_image_stats", "reset_vibe_image"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the VM keeper imports this package and needs none of it.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
