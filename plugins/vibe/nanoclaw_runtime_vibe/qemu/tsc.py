"""The host's TSC frequency, handed to TCG guests so they never calibrate it.

Under TCG the guest's ``rdtsc`` returns the host's time stamp counter, but the
``microvm`` machine has neither HPET nor an ACPI PM timer, so the guest kernel
can only calibrate the TSC against the emulated PIT. That calibration times
loops of emulated code; when a vCPU thread is descheduled at the wrong moment
it fails ("Fast TSC calibration failed"), the later slow calibration has no
reference ("tsc: Marking TSC unstable due to could not calculate TSC khz"),
and boot then hangs calibrating the local APIC timer. Passing the frequency
with ``tsc_early_khz=`` skips the calibration entirely.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import platform
import time

# rdtsc; shl rdx, 32; or rax, rdx; ret
_RDTSC = bytes([0x0F, 0x31, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3])


def measure_tsc_khz(samples: int = 5, interval_s: float = 0.04) -> int | None:
    """The host TSC frequency in kHz (median of ``samples``), or None where it cannot be read
    (not x86-64, or executable memory refused)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError):
        return None
    try:
        page.write(_RDTSC)
        anchor = ctypes.c_char.from_buffer(page)
        rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(anchor))
        results = []
        for _ in range(samples):
            t0, c0 = time.monotonic_ns(), rdtsc()
            time.sleep(interval_s)
            t1, c1 = time.monotonic_ns(), rdtsc()
            if t1 > t0 and c1 > c0:
                results.append((c1 - c0) * 1_000_000 // (t1 - t0))
        del rdtsc, anchor
    finally:
        with contextlib.suppress(BufferError):  # a ctypes view still alive
            page.close()
    if not results:
        return None
    results.sort()
    khz = results[len(results) // 2]
    return khz if 100_000 <= khz <= 10_000_000 else None
