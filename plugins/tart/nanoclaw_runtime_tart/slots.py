"""The machine-wide count of running VMs (macOS runs at most two macOS guests at once).

The slots are lock files in a per-user folder shared by every project and
process, so runs beyond the limit wait for a slot instead of failing. The
kernel drops a slot when its holder dies.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nanoclaw_runtimes_core.locks import SlotPool
from nanoclaw_runtimes_core.models import Project

from .settings import TartSettings


def slots_dir(project: Project, settings: TartSettings) -> Path:
    """``TART_SLOTS_DIR`` (relative to the project root), else a per-user temporary folder."""
    if settings.slots_dir:
        return project.resolve(settings.slots_dir)
    user = os.getuid() if hasattr(os, "getuid") else os.getlogin()
    return Path(tempfile.gettempdir()) / f"nanoclaw-tart-slots-{user}"


def slot_pool(project: Project, settings: TartSettings) -> SlotPool:
    """The pool of ``TART_MAX_RUNNING`` slots for running VMs."""
    return SlotPool(slots_dir(project, settings), settings.max_running, name="vm")
