"""What the installed bubblewrap can do on this host, for the sandbox user: probed once.

A probe reads ``bwrap --version`` and ``--help`` (the options this engine needs:
``--args``, ``--bind-fd``, ``--ro-bind-data``, ``--perms``; and whether
``--disable-userns`` exists), then starts one trial sandbox as the sandbox user
(through ``setpriv`` when this process is root): user namespaces must work for
that uid. The answer is cached on disk per boot, bwrap binary and uid
(:mod:`.probe_cache`), so a run pays for it once.
"""

from __future__ import annotations

import functools
import os

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.record import asdict

from . import probe_cache

NEEDED = ("--args", "--bind-fd", "--ro-bind-fd", "--ro-bind-data", "--perms", "--clearenv")
PROBE_TIMEOUT_S = 10.0
CACHE_NAME = "bwrap-probe-v2"


class Probe(nc.Record):
    """What a probe found. ``works``: a trial sandbox started as the sandbox user."""

    works: bool
    version: str | None = None
    disable_userns: bool = False
    missing: tuple[str, ...] = ()
    message: str = ""


def _setpriv(uid: int, gid: int) -> list[str]:
    if os.geteuid() == 0:
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    return []


def _probe(bwrap: str, uid: int, gid: int) -> Probe:
    from nanoclaw_runtimes_core.tools import run_tool  # once per boot: the cache answers runs

    env = dict(nc.HOST_ENV)
    version_run = run_tool([bwrap, "--version"], timeout_s=PROBE_TIMEOUT_S, env=env)
    version = version_run.stdout.strip().removeprefix("bubblewrap ") or None
    help_run = run_tool([bwrap, "--help"], timeout_s=PROBE_TIMEOUT_S, env=env)
    words = set(help_run.stdout.split())
    missing = tuple(opt for opt in NEEDED if opt not in words)
    if missing:
        return Probe(
            works=False,
            version=version,
            missing=missing,
            message=f"bubblewrap {version or '(unknown version)'} lacks {', '.join(missing)}",
        )
    disable = "--disable-userns" in words
    true = nc.find_program("true", path=nc.HOST_ENV["PATH"]) or "/bin/true"
    trial = [
        *_setpriv(uid, gid),
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "1000",
        "--gid",
        "1000",
        *(["--disable-userns"] if disable else []),
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        true,
    ]
    result = run_tool(trial, timeout_s=PROBE_TIMEOUT_S, env=env)
    if not result.ok:
        return Probe(works=False, version=version, message=result.message())
    return Probe(works=True, version=version, disable_userns=disable)


@functools.lru_cache(maxsize=8)
def probe(bwrap: str, uid: int, gid: int) -> Probe:
    """The probe of ``bwrap`` for sandbox user ``uid``/``gid``, from the cache when it holds
    one for this boot and binary."""
    key = {**probe_cache.host_key(bwrap), "euid": os.geteuid(), "sandbox": [uid, gid]}
    found = probe_cache.cached(
        CACHE_NAME,
        key,
        lambda: asdict(_probe(bwrap, uid, gid)),
        keep=lambda value: bool(value.get("works")),  # a fix (sysctl, AppArmor) is seen at once
    )
    try:
        return Probe(
            works=bool(found["works"]),
            version=found.get("version"),
            disable_userns=bool(found.get("disable_userns")),
            missing=tuple(found.get("missing") or ()),
            message=str(found.get("message") or ""),
        )
    except (KeyError, TypeError):
        return _probe(bwrap, uid, gid)


def userns_fix(uid: int) -> str:
    """How to let ``uid`` create user namespaces."""
    return (
        f"let uid {uid} create user namespaces: `sysctl -w user.max_user_namespaces=15000` "
        "(and `kernel.unprivileged_userns_clone=1` on kernels that have it; on Ubuntu 24.04+, "
        "`kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile for bwrap)"
    )
