"""A spare worker takes its own copy of the helper's memory before a run arrives.

A forked worker shares the helper's pages copy-on-write. Python writes to nearly every object
it touches (reference counts), so a run's first steps would copy page after page: about
1,200 page faults, 5 to 8 ms of a run on a small machine. A spare has nothing to do until a
launcher connects, so it takes those faults then, all at once, with ``madvise``:
``MADV_POPULATE_WRITE`` on its private writable mappings (the copy made ahead, contents
unchanged) and ``MADV_POPULATE_READ`` on the others (their page tables filled in).

Linux 5.14 or later; elsewhere, or on any refusal, nothing happens and the run pays the faults
as before. The memory this costs is what a plain ``nanoclaw-runtimes run`` process holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Callable

MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
SKIPPED = frozenset({"[vvar]", "[vdso]", "[vsyscall]", "[vvar_vclock]"})
"""Kernel-provided mappings: they cannot be populated and need not be."""
MAPPING_MAX = 64 << 20
"""A mapping larger than this (a reservation, not a heap in use) is left alone."""
TOTAL_MAX = 256 << 20


def _madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


MADVISE = _madvise()
"""Looked up in the helper, so a spare pays nothing for it."""


def regions(maps: str) -> list[tuple[int, int, int]]:
    """(start, length, advice) for each mapping worth populating, from ``/proc/self/maps``."""
    found: list[tuple[int, int, int]] = []
    total = 0
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        span, perms = fields[0], fields[1]
        name = fields[5].strip() if len(fields) == 6 else ""
        if name in SKIPPED or len(perms) < 4 or perms[0] != "r":
            continue
        low_text, _, high_text = span.partition("-")
        try:
            low, high = int(low_text, 16), int(high_text, 16)
        except ValueError:
            continue
        length = high - low
        if length <= 0 or length > MAPPING_MAX or total + length > TOTAL_MAX:
            continue
        if perms[1] == "w" and perms[3] == "p":
            advice = MADV_POPULATE_WRITE
        elif perms[3] == "s" and perms[1] == "w":
            continue  # shared with another process: nothing of ours to copy
        else:
            advice = MADV_POPULATE_READ
        found.append((low, length, advice))
        total += length
    return found


def prefault() -> int:
    """Populate this process's mappings; returns the bytes populated (0: not done here)."""
    if MADVISE is None:
        return 0
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            text = maps.read()
    except OSError:
        return 0
    done = 0
    for start, length, advice in regions(text):
        with contextlib.suppress(OSError):
            if MADVISE(start, length, advice) == 0:
                done += length
    return done
