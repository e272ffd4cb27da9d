"""nanoclaw-runtime-vibe: a persistent Linux VM per group (vibe on macOS, QEMU on Linux)."""

from __future__ import annotations

from .api import get_vibe_image_stats, reset_vibe_image

__all__ = ["get_vibe_image_stats", "reset_vibe_image"]
