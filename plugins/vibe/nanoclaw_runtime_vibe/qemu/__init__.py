"""The vibe runtime's QEMU engine: the same persistent per-group disks, booted on Linux and
kept warm between runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import QemuEngine

__all__ = ["QemuEngine"]


def __getattr__(name: str) -> Any:
    if name == "QemuEngine":
        from .engine import QemuEngine

        return QemuEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
