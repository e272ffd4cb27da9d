"""How the QEMU process itself is confined, so a guest that escapes into QEMU gains little.

- **seccomp** (``-sandbox on``) with obsolete system calls, spawning processes and changes
  of scheduling or resource limits denied;
- **an unprivileged host user** when the CLI runs as root: QEMU opens what it needs (disk,
  kernel, sockets, ``/dev/kvm``) as root, then switches to the *VM process user* at the end of
  its start-up, while the guest kernel is still booting: long before anything from the
  group's disk runs. That user is the sandbox user's ids plus 65536, outside the range guests map
  to (so it owns none of the files a guest leaves), and not virtiofsd's user (so it cannot
  trace the share daemons). A process whose ids changed is not dumpable: one group's QEMU
  cannot trace another's either.

Which flags this QEMU has is probed once (``-version`` after the flag: a flag the binary
lacks fails while options are parsed) and cached with the accelerator's verdict.
"""

from __future__ import annotations

import os

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.identity import GUEST_ID_RANGE
from nanoclaw_runtimes_core.record import Record

SECCOMP = "on,obsolete=deny,spawn=deny,resourcecontrol=deny"


class Confinement(Record):
    """What this QEMU binary can do to confine itself."""

    seccomp: bool
    drop_flag: str | None
    """``-run-with`` (QEMU 9.1 and later), ``-runas`` (before), or None."""


def _accepts(qemu: str, *flag: str) -> bool:
    return nc.run_tool([qemu, *flag, "-version"], timeout_s=10).ok


def probe(qemu: str) -> Confinement:
    """The confinement flags ``qemu`` accepts."""
    drop = None
    if _accepts(qemu, "-run-with", "user=0:0"):
        drop = "-run-with"
    elif _accepts(qemu, "-runas", "0:0"):
        drop = "-runas"
    return Confinement(seccomp=_accepts(qemu, "-sandbox", SECCOMP), drop_flag=drop)


def vm_process_ids(user: nc.SandboxUser) -> tuple[int, int] | None:
    """The host ids QEMU runs as: None when it stays the invoking user (a non-root CLI)."""
    if os.geteuid() != 0 or user.is_invoking_user:
        return None
    return user.uid + GUEST_ID_RANGE, user.gid + GUEST_ID_RANGE


def qemu_flags(confinement: Confinement, user: nc.SandboxUser) -> list[str]:
    """The QEMU options that confine it; refuses to run a root QEMU it cannot drop."""
    flags = ["-sandbox", SECCOMP] if confinement.seccomp else []
    ids = vm_process_ids(user)
    if ids is not None:
        spec = f"{ids[0]}:{ids[1]}"
        if confinement.drop_flag == "-run-with":
            flags += ["-run-with", f"user={spec}"]
        elif confinement.drop_flag == "-runas":
            flags += ["-runas", spec]
        else:
            raise nc.EngineUnavailable(
                "this QEMU has neither -run-with user= nor -runas, so as root the VM would "
                "run as root; install QEMU 5.0 or later, or run nanoclaw-runtimes as a "
                "regular user"
            )
    return flags


def describe(confinement: Confinement) -> str:
    """The confinement as ``doctor`` reports it."""
    parts = ["seccomp" if confinement.seccomp else "no seccomp (this QEMU was built without it)"]
    if os.geteuid() == 0:
        parts.append(
            "switches to the sandbox user's ids + 65536 as it starts"
            if confinement.drop_flag
            else "cannot switch from root (no -runas): VMs are refused as root"
        )
    return ", ".join(parts)
