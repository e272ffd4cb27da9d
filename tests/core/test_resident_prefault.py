"""A spare worker's copy of the helper's memory, taken ahead (resident/prefault.py)."""

from __future__ import annotations

import os
import resource
import sys

import pytest

from nanoclaw_runtimes_core.resident import prefault

MAPS = """\
55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 1234   /usr/bin/python3.11
55d0c0a21000-55d0c0c00000 r-xp 00021000 08:01 1234   /usr/bin/python3.11
55d0c0e00000-55d0c0e40000 rw-p 00400000 08:01 1234   /usr/bin/python3.11
55d0c1000000-55d0c2000000 rw-p 00000000 00:00 0      [heap]
7f0000000000-7f0008000000 rw-p 00000000 00:00 0
7f0010000000-7f0010010000 ---p 00000000 00:00 0
7f0020000000-7f0020001000 rw-s 00000000 00:05 77     /dev/zero (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]
7ffd10000000-7ffd10002000 r--p 00000000 00:00 0      [vvar]
7ffd10002000-7ffd10004000 r-xp 00000000 00:00 0      [vdso]
garbage line
"""


def test_regions_are_the_private_writable_and_readable_mappings_of_a_sane_size() -> None:
    found = {start: (length, advice) for start, length, advice in prefault.regions(MAPS)}
    write, read = prefault.MADV_POPULATE_WRITE, prefault.MADV_POPULATE_READ
    assert found == {
        0x55D0C0A00000: (0x21000, read),
        0x55D0C0A21000: (0x1DF000, read),
        0x55D0C0E00000: (0x40000, write),
        0x55D0C1000000: (0x1000000, write),  # the heap, 16 MiB
        0x7FFD00000000: (0x21000, write),  # the stack
    }
    # Left alone: a 128 MiB reservation, a guard area, a shared mapping, the kernel's pages.


def test_regions_stop_at_the_total_cap() -> None:
    line = "{:x}-{:x} rw-p 00000000 00:00 0\n"
    size = prefault.MAPPING_MAX
    maps = "".join(line.format(i * 2 * size, i * 2 * size + size) for i in range(1, 10))
    total = sum(length for _, length, _ in prefault.regions(maps))
    assert total == prefault.TOTAL_MAX


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_POPULATE_* is Linux's")
def test_a_forked_child_that_prefaulted_writes_its_memory_without_copy_on_write_faults() -> None:
    pages = 4096
    page = os.sysconf("SC_PAGE_SIZE")
    memory = bytearray(pages * page)  # written here, shared copy-on-write with the children

    def faults_writing(prefaulted: bool) -> int:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child reports through the pipe)
            done = prefault.prefault() if prefaulted else 0
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for offset in range(0, len(memory), page):
                memory[offset] = 1
            after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            os.write(write, f"{after - before} {done}".encode())
            os._exit(0)
        os.close(write)
        answer = os.read(read, 100).decode().split()
        os.close(read)
        os.waitpid(pid, 0)
        if prefaulted and int(answer[1]) == 0:
            pytest.skip("this kernel has no MADV_POPULATE_WRITE (Linux 5.14 or later)")
        return int(answer[0])

    assert faults_writing(prefaulted=False) >= pages  # one copy per page touched
    assert faults_writing(prefaulted=True) < pages // 20  # the copies were made ahead
