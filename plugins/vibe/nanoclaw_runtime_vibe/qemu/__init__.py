"""The vibe runtime's QEMU engine: the same persistent per-group disks, booted on Linux."""

from __future__ import annotations

from .engine import QemuEngine

__all__ = ["QemuEngine"]
